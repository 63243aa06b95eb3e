//! `ucgm encode`: an image folder → latent shards in the reference's format
//! (`data.py` of the reference), readable by [`crate::data::shards::LatentShards`] and by
//! the reference's own `ImgLatentDataset`.
//!
//! * **Images and labels** as torchvision `ImageFolder`: class = each sub-folder of the
//!   root (sorted by name → labels `0..K`); its images found recursively, ordered by
//!   (folder path, file name). An ImageNet-style `train/` folder is the same layout.
//!   Files with an extension torchvision takes as an image but this engine cannot
//!   decode (`.bmp`, `.webp`, `.tif`, …) are an error listing them — skipping them would
//!   shift every later index against the reference's extraction.
//! * **Preprocessing**: [`crate::image::center_crop`] (`center_crop_arr`, RGB in
//!   [−1, 1]); `latents_flip` encodes the horizontally flipped crop.
//! * **Latents**: the raw VAE posterior — no scaling factor, no statistics (the trainer
//!   applies `data.latent_norm` / `latent_multiplier` when it reads them, as the
//!   reference does). [`PosteriorMode::Mean`] as the reference's SD-VAE extraction
//!   (`latent_dist.mean`); [`PosteriorMode::Sample`] as its VA-VAE extraction
//!   (`posterior.sample()` = mean + exp(½·logvar)·ε), ε seeded by `(seed, image index)`
//!   so a resumed run draws the same noise.
//! * **Shards**: `latents_rank00_shard{k:03}.safetensors`, `shard_size` images each
//!   (the reference: 10 000), the last one shorter; tensors `latents`, `latents_flip`
//!   (f32 `[N, C, H, W]`) and `labels` (i64 `[N]`); metadata `total_size`, `dtype`,
//!   `device` as the reference writes, plus [`ENCODE_KEY`] (what made the shard).
//! * **Resumable**: each shard is written atomically (temporary file + rename), so an
//!   interrupted run leaves only whole shards; a rerun skips every shard whose
//!   [`ENCODE_KEY`] matches this run and refuses one that was made differently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::control::RunControl;
use crate::data::shards::write_shard;
use crate::engine::AnyVae;
use crate::error::{Error, Result};
use crate::image::center_crop::{center_crop_arr, flip_horizontal, to_signed_chw};
use crate::image::decode::read_rgb8;
use crate::rng::Rng;

/// Shard metadata key describing how the shard was made (JSON [`EncodeStamp`]).
pub const ENCODE_KEY: &str = "ucgm_encode";

/// Images per shard of the reference's extraction.
pub const REFERENCE_SHARD_SIZE: usize = 10_000;

/// Extensions torchvision's `ImageFolder` treats as images (lower case).
const TORCHVISION_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];
/// The ones decoded here.
const DECODED_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Which latent of the posterior is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosteriorMode {
    /// The posterior mean (the reference's SD-VAE extraction).
    Mean,
    /// One sample mean + exp(½·logvar)·ε (the reference's VA-VAE extraction).
    Sample,
}

impl std::str::FromStr for PosteriorMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(PosteriorMode::Mean),
            "sample" => Ok(PosteriorMode::Sample),
            _ => Err(Error::invalid(format!("posterior {s:?}: expected mean or sample"))),
        }
    }
}

/// What `ucgm encode` does.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// The image folder (one sub-folder per class).
    pub input: PathBuf,
    /// The shard folder (created if missing).
    pub output: PathBuf,
    /// Side of the square crop in pixels (a multiple of the VAE's factor).
    pub image_size: usize,
    /// Images per VAE call (each also encoded flipped).
    pub batch: usize,
    /// Images per shard.
    pub shard_size: usize,
    /// Mean or sample of the posterior.
    pub posterior: PosteriorMode,
    /// Seed of the posterior samples.
    pub seed: u64,
    /// Names the VAE in the shards' stamp (its file name).
    pub vae_name: String,
}

/// The images of a folder with their labels, in the reference's order.
#[derive(Clone, Debug)]
pub struct ImageList {
    /// Class names (sub-folder names), indexed by label.
    pub classes: Vec<String>,
    /// Image files.
    pub files: Vec<PathBuf>,
    /// Label of each file.
    pub labels: Vec<usize>,
}

/// Lists `root` as torchvision `ImageFolder` does.
///
/// Errors: [`Error::Io`] for an unreadable folder; [`Error::InvalidArgument`] for no
/// class folder, no image at all, or files of an image type that cannot be decoded here.
pub fn list_images(root: &Path) -> Result<ImageList> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        if entry.path().is_dir() {
            classes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no class sub-folders (expected root/<class>/<images>)",
            root.display()
        )));
    }
    let (mut files, mut labels, mut unsupported) = (Vec::new(), Vec::new(), Vec::new());
    for (label, class) in classes.iter().enumerate() {
        let mut found: Vec<(String, String, PathBuf)> = Vec::new();
        walk(&root.join(class), &mut found)?;
        found.sort();
        for (_, _, path) in found {
            let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
            if DECODED_EXTENSIONS.contains(&ext.as_str()) {
                files.push(path);
                labels.push(label);
            } else if TORCHVISION_EXTENSIONS.contains(&ext.as_str()) {
                unsupported.push(path);
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::invalid(format!(
            "{} image file(s) of a type this engine does not decode (PNG and JPEG only), e.g. {}: convert them first",
            unsupported.len(),
            unsupported[0].display()
        )));
    }
    if files.is_empty() {
        return Err(Error::invalid(format!("{}: no .png/.jpg/.jpeg images in the class folders", root.display())));
    }
    Ok(ImageList { classes, files, labels })
}

/// Every file under `dir` (following links, as `os.walk(followlinks=True)`), as
/// `(folder path, file name, path)`.
fn walk(dir: &Path, out: &mut Vec<(String, String, PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.is_file() {
            out.push((dir.to_string_lossy().into_owned(), entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    Ok(())
}

/// What made a shard; a rerun skips a shard only if its stamp equals the new run's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeStamp {
    /// File name of the VAE.
    pub vae: String,
    /// The VAE's configuration (JSON of its debug form: channels, levels, …).
    pub vae_config: String,
    pub image_size: usize,
    pub posterior: PosteriorMode,
    pub seed: u64,
    pub shard_size: usize,
    /// Images in the whole folder.
    pub total_images: usize,
    /// CRC-32 of the ordered (relative path, label) list.
    pub list_crc: u32,
    /// First image index of this shard.
    pub first: usize,
    /// Images in this shard.
    pub count: usize,
}

/// Shard file name `k`, as the reference names them (one rank).
pub fn shard_name(k: usize) -> String {
    format!("latents_rank00_shard{k:03}.safetensors")
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodeReport {
    pub images: usize,
    pub classes: usize,
    pub shards_written: usize,
    pub shards_skipped: usize,
    /// `[C, H, W]` of one latent.
    pub latent_shape: [usize; 3],
}

fn list_crc(root: &Path, list: &ImageList) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (f, l) in list.files.iter().zip(&list.labels) {
        let rel = f.strip_prefix(root).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&(*l as u64).to_le_bytes());
    }
    h.finalize()
}

/// Reads one image, crops it and writes `[3, s, s]` for it and its mirror image.
fn preprocess(path: &Path, size: usize, out: &mut [f32], out_flip: &mut [f32]) -> Result<()> {
    let img = center_crop_arr(&read_rgb8(path)?, size).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::format(path, m),
        other => other,
    })?;
    to_signed_chw(&img, out)?;
    to_signed_chw(&flip_horizontal(&img), out_flip)
}

/// Encodes the folder into shards. `ctl.progress` gets (images done, total); cancelling
/// stops before the next batch and leaves only whole shards.
pub fn encode_folder(vae: &mut AnyVae, opts: &EncodeOptions, ctl: &mut RunControl<'_>) -> Result<EncodeReport> {
    let cfg = vae.config().clone();
    let f = cfg.downsample_factor();
    if opts.image_size == 0 || !opts.image_size.is_multiple_of(f) {
        return Err(Error::invalid(format!(
            "--image-size {} must be a positive multiple of the VAE's downsampling factor {f}",
            opts.image_size
        )));
    }
    if cfg.in_channels != 3 {
        return Err(Error::invalid(format!("the VAE takes {} channels; images are RGB (3)", cfg.in_channels)));
    }
    if opts.batch == 0 || opts.shard_size == 0 {
        return Err(Error::invalid("--batch and --shard-size must be at least 1"));
    }
    let s = opts.image_size;
    let per_image = 3 * s * s;
    crate::limits::check_bytes("image batch", opts.batch.saturating_mul(2 * per_image), 4)?;
    let list = list_images(&opts.input)?;
    std::fs::create_dir_all(&opts.output).map_err(|e| Error::io(&opts.output, e))?;
    let total = list.files.len();
    let (z, lh, lw) = (cfg.latent_channels, s / f, s / f);
    let lat = z * lh * lw;
    let base = EncodeStamp {
        vae: opts.vae_name.clone(),
        vae_config: format!("{cfg:?}"),
        image_size: s,
        posterior: opts.posterior,
        seed: opts.seed,
        shard_size: opts.shard_size,
        total_images: total,
        list_crc: list_crc(&opts.input, &list),
        first: 0,
        count: 0,
    };
    let mut report = EncodeReport {
        images: total,
        classes: list.classes.len(),
        latent_shape: [z, lh, lw],
        ..Default::default()
    };
    let shards = total.div_ceil(opts.shard_size);
    let mut done = 0usize;
    for k in 0..shards {
        let first = k * opts.shard_size;
        let count = opts.shard_size.min(total - first);
        let stamp = EncodeStamp { first, count, ..base.clone() };
        let stamp_json = serde_json::to_string(&stamp).map_err(|e| Error::Internal(e.to_string()))?;
        let path = opts.output.join(shard_name(k));
        if path.exists() {
            let meta = super::checkpoints::read_header_metadata(&path)?;
            if meta.get(ENCODE_KEY) == Some(&stamp_json) {
                report.shards_skipped += 1;
                done += count;
                ctl.step(done, total)?;
                continue;
            }
            return Err(Error::invalid(format!(
                "{} exists but was made from other images or settings ({}); remove it or choose another --out",
                path.display(),
                meta.get(ENCODE_KEY).map_or("not by ucgm encode".to_string(), |m| m.clone())
            )));
        }
        let mut latents = crate::limits::try_vec::<f32>("shard latents", count * lat)?;
        let mut latents_flip = crate::limits::try_vec::<f32>("shard flipped latents", count * lat)?;
        let mut b0 = 0;
        while b0 < count {
            ctl.check()?;
            let nb = opts.batch.min(count - b0);
            // [2·nb, 3, s, s]: the images, then their mirror images.
            let mut x = vec![0.0f32; 2 * nb * per_image];
            let (xs, xf) = x.split_at_mut(nb * per_image);
            xs.par_chunks_mut(per_image)
                .zip(xf.par_chunks_mut(per_image))
                .enumerate()
                .try_for_each(|(i, (a, b))| preprocess(&list.files[first + b0 + i], s, a, b))?;
            // The cancel flag also stops the VAE between its chunks of images.
            let mut inner = RunControl {
                cancel: ctl.cancel.clone(),
                progress: None,
            };
            let post = vae.encode_with(&x, 2 * nb, s, s, &mut inner)?;
            let mut zs = post.mean;
            if opts.posterior == PosteriorMode::Sample {
                for i in 0..nb {
                    let index = (first + b0 + i) as u64;
                    for (j, part) in [0usize, nb].into_iter().enumerate() {
                        // One stream per (seed, image, flipped?): independent of batching.
                        let mut rng = Rng::new(opts.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((j as u64) << 63));
                        let eps = rng.normal_f32(lat);
                        let o = (part + i) * lat;
                        for t in 0..lat {
                            zs[o + t] += (0.5 * post.logvar[o + t]).exp() * eps[t];
                        }
                    }
                }
            }
            latents[b0 * lat..(b0 + nb) * lat].copy_from_slice(&zs[..nb * lat]);
            latents_flip[b0 * lat..(b0 + nb) * lat].copy_from_slice(&zs[nb * lat..]);
            b0 += nb;
            ctl.step(done + b0, total)?;
        }
        let labels: Vec<i64> = list.labels[first..first + count].iter().map(|&l| l as i64).collect();
        let metadata = BTreeMap::from([
            ("total_size".to_string(), count.to_string()),
            ("dtype".to_string(), "torch.float32".to_string()),
            ("device".to_string(), "cpu".to_string()),
            (ENCODE_KEY.to_string(), stamp_json),
        ]);
        write_shard(&path, [count, z, lh, lw], &latents, &latents_flip, &labels, &metadata)?;
        report.shards_written += 1;
        done += count;
    }
    Ok(report)
}
