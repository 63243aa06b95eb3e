//! Latent shards, the reference's training-data format (spec §4.6, `data.py`).
//!
//! A directory of `*.safetensors` files, read in sorted file-name order, each holding
//!
//! | tensor | shape | dtype |
//! |---|---|---|
//! | `latents` | `[N, C, H, W]` | f32 (f16 / bf16 / f64 accepted, converted to f32) |
//! | `latents_flip` | `[N, C, H, W]` — the latents of the horizontally flipped images | same |
//! | `labels` | `[N]` | i64 (i32 / u8 accepted) |
//!
//! `N` may differ between shards (the reference writes 10 000 per shard, the last one
//! shorter); `C, H, W` may not. Item `i` of the concatenation returns `latents[i]` or,
//! with probability ½ (one uniform draw from the batcher's augmentation stream),
//! `latents_flip[i]`. The flipped latent is a separate tensor because flipping a VAE
//! latent is not the same as encoding a flipped image.
//!
//! All shards are loaded into memory as f32 at [`LatentShards::open`]; malformed data
//! is reported there, as [`Error::Format`] naming the file and the tensor, never later
//! in the training loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{check_get_args, draw_flip, Dataset};
use crate::error::{check_len, Error, Result};
use crate::rng::Rng;
use crate::tensor_file::{write_atomic, TensorFile, TensorOut};

/// Tensor name of the latents.
pub const LATENTS: &str = "latents";
/// Tensor name of the flipped-image latents.
pub const LATENTS_FLIP: &str = "latents_flip";
/// Tensor name of the labels.
pub const LABELS: &str = "labels";

/// All latent shards of one directory, in memory.
#[derive(Debug)]
pub struct LatentShards {
    files: Vec<PathBuf>,
    shape: [usize; 3],
    num_classes: usize,
    latents: Vec<f32>,      // [N, C, H, W]
    latents_flip: Vec<f32>, // [N, C, H, W]
    labels: Vec<usize>,     // [N]
}

/// The `*.safetensors` files of `dir`, sorted by file name.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let is_shard = path.extension().is_some_and(|e| e == "safetensors") && path.is_file();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if is_shard && !hidden {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Turns a tensor-level error from [`TensorFile`] into a data-format error on `path`.
fn as_format(path: &Path, e: Error) -> Error {
    match e {
        Error::Weights(msg) => Error::format(path, msg),
        other => other,
    }
}

/// One shard, read and validated.
struct Shard {
    shape: [usize; 4],
    latents: Vec<f32>,
    latents_flip: Vec<f32>,
    labels: Vec<i64>,
}

fn read_shard(path: &Path) -> Result<Shard> {
    let file = TensorFile::open(path)?;
    for name in [LATENTS, LATENTS_FLIP, LABELS] {
        if !file.contains(name) {
            return Err(Error::format(path, format!("tensor {name:?} is missing (found {:?})", file.names())));
        }
    }
    let (shape, latents) = file.f32(LATENTS).map_err(|e| as_format(path, e))?;
    let &[n, c, h, w] = shape.as_slice() else {
        return Err(Error::format(path, format!("tensor {LATENTS:?} has shape {shape:?}, expected [N, C, H, W]")));
    };
    let (flip_shape, latents_flip) = file.f32(LATENTS_FLIP).map_err(|e| as_format(path, e))?;
    if flip_shape != shape {
        return Err(Error::format(
            path,
            format!("tensor {LATENTS_FLIP:?} has shape {flip_shape:?}, but {LATENTS:?} has {shape:?}"),
        ));
    }
    let (label_shape, labels) = file.i64(LABELS).map_err(|e| as_format(path, e))?;
    if label_shape != [n] {
        return Err(Error::format(
            path,
            format!("tensor {LABELS:?} has shape {label_shape:?}, expected [{n}] (one per latent)"),
        ));
    }
    for (name, values) in [(LATENTS, &latents), (LATENTS_FLIP, &latents_flip)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                path,
                format!("tensor {name:?} has non-finite value {} at element {i}", values[i]),
            ));
        }
    }
    if let Some(i) = labels.iter().position(|&l| l < 0) {
        return Err(Error::format(path, format!("tensor {LABELS:?} has negative label {} at index {i}", labels[i])));
    }
    Ok(Shard {
        shape: [n, c, h, w],
        latents,
        latents_flip,
        labels,
    })
}

impl LatentShards {
    /// Reads every shard of `dir` (sorted by file name) and validates them.
    ///
    /// `num_classes`: the number of classes of the task (e.g. 1000 for ImageNet);
    /// labels must be below it. `None` takes `max label + 1`.
    ///
    /// Errors: [`Error::Io`] if `dir` cannot be listed or a file read;
    /// [`Error::InvalidArgument`] if it holds no shard or `num_classes` is 0;
    /// [`Error::Format`] (naming the file and tensor) for a malformed shard, a missing
    /// tensor, a wrong dtype or rank, `latents_flip`/`labels` not matching `latents`,
    /// `C, H, W` differing from the first shard, non-finite latents, or a label out of
    /// range.
    pub fn open(dir: impl AsRef<Path>, num_classes: Option<usize>) -> Result<Self> {
        let dir = dir.as_ref();
        let files = shard_files(dir)?;
        if files.is_empty() {
            return Err(Error::invalid(format!("{}: no *.safetensors shard files", dir.display())));
        }
        if num_classes == Some(0) {
            return Err(Error::invalid("num_classes must be at least 1"));
        }
        let mut shape: Option<[usize; 3]> = None;
        let (mut latents, mut latents_flip, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        let mut max_label = 0usize;
        for path in &files {
            let shard = read_shard(path)?;
            let [_, c, h, w] = shard.shape;
            match shape {
                None => shape = Some([c, h, w]),
                Some(s) if s != [c, h, w] => {
                    return Err(Error::format(
                        path,
                        format!("tensor {LATENTS:?} has samples of shape {:?}, but {} has {s:?}", [c, h, w], files[0].display()),
                    ));
                }
                Some(_) => {}
            }
            for (i, &l) in shard.labels.iter().enumerate() {
                let l = l as usize;
                if let Some(k) = num_classes {
                    if l >= k {
                        return Err(Error::format(
                            path,
                            format!("tensor {LABELS:?}: label {l} at index {i} is not below num_classes = {k}"),
                        ));
                    }
                }
                max_label = max_label.max(l);
                labels.push(l);
            }
            latents.extend_from_slice(&shard.latents);
            latents_flip.extend_from_slice(&shard.latents_flip);
        }
        let shape = shape.ok_or_else(|| Error::Internal("no shard was read".into()))?;
        if labels.is_empty() || shape.contains(&0) {
            return Err(Error::format(
                dir,
                format!("the shards hold no data (sample shape {shape:?}, {} samples)", labels.len()),
            ));
        }
        Ok(LatentShards {
            files,
            shape,
            num_classes: num_classes.unwrap_or(max_label + 1),
            latents,
            latents_flip,
            labels,
        })
    }

    /// The shard files, in the order their items are numbered.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Label of item `index` (no bounds check beyond the slice's).
    pub fn label(&self, index: usize) -> usize {
        self.labels[index]
    }
}

impl Dataset for LatentShards {
    fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32] /* [C, H, W] */) -> Result<usize> {
        let n = self.sample_len();
        check_get_args("latent shards", index, self.len(), x_out, n)?;
        let source = if draw_flip(rng) { &self.latents_flip } else { &self.latents };
        x_out.copy_from_slice(&source[index * n..(index + 1) * n]);
        Ok(self.labels[index])
    }
}

/// Writes one shard file (atomically) in the reference format.
///
/// `shape` is `[N, C, H, W]`; `latents` and `latents_flip` hold `N·C·H·W` values,
/// `labels` `N`. `metadata` goes into the safetensors header.
pub fn write_shard(
    path: impl AsRef<Path>,
    shape: [usize; 4],
    latents: &[f32],      // [N, C, H, W]
    latents_flip: &[f32], // [N, C, H, W]
    labels: &[i64],       // [N]
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let numel: usize = shape.iter().product();
    check_len("write_shard: latents", latents.len(), numel)?;
    check_len("write_shard: latents_flip", latents_flip.len(), numel)?;
    check_len("write_shard: labels", labels.len(), shape[0])?;
    write_atomic(
        path,
        &[
            TensorOut::f32(LATENTS, shape.to_vec(), latents),
            TensorOut::f32(LATENTS_FLIP, shape.to_vec(), latents_flip),
            TensorOut::i64(LABELS, vec![shape[0]], labels),
        ],
        metadata,
    )
}
