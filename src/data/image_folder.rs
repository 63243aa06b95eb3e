//! A folder of PNG images, one sub-folder per class (the torchvision `ImageFolder`
//! layout):
//!
//! ```text
//! root/
//!   cat/   0001.png 0002.png ...
//!   dog/   a.png b.png ...
//! ```
//!
//! Sub-folder names sorted by byte order become class ids `0..K`. Within a class, the
//! `*.png` files (extension case-insensitive) are taken in sorted name order; other
//! files and hidden entries (names starting with `.`) are ignored. Every class must
//! contain at least one image, and every image the same `[C, H, W]` (grayscale → 1
//! channel, RGB/RGBA/palette → 3; see [`crate::image`]) — nothing is cropped or
//! resized, a mismatch is an [`Error::Format`] naming the file.
//!
//! All images are decoded at [`ImageFolder::open`] (in parallel) and kept as floats in
//! [−1, 1]. [`Dataset::get`] mirrors the image left–right with probability ½.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{check_get_args, draw_flip, flip_horizontal, Dataset};
use crate::error::{Error, Result};
use crate::image::read_png;
use crate::rng::Rng;

/// PNG images with labels from sub-folder names, decoded into memory.
#[derive(Debug)]
pub struct ImageFolder {
    class_names: Vec<String>,
    files: Vec<PathBuf>,
    shape: [usize; 3],
    images: Vec<f32>, // [N, C, H, W]
    labels: Vec<usize>,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Sorted, non-hidden entries of `dir` that satisfy `keep`.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if !is_hidden(&entry.file_name()) && keep(&path) {
            out.push(path);
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

fn is_png(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

impl ImageFolder {
    /// Reads every class folder under `root`.
    ///
    /// Errors: [`Error::Io`] if a folder cannot be listed or a file read;
    /// [`Error::InvalidArgument`] if `root` has no class folder or a class folder has
    /// no PNG; [`Error::Format`] naming the file for an undecodable PNG or one whose
    /// `[C, H, W]` differs from the first image's.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let class_dirs = sorted_entries(root, |p| p.is_dir())?;
        if class_dirs.is_empty() {
            return Err(Error::invalid(format!("{}: no class sub-folders", root.display())));
        }
        let mut class_names = Vec::with_capacity(class_dirs.len());
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (label, dir) in class_dirs.iter().enumerate() {
            let pngs = sorted_entries(dir, is_png)?;
            if pngs.is_empty() {
                return Err(Error::invalid(format!("{}: class folder has no PNG images", dir.display())));
            }
            labels.extend(std::iter::repeat_n(label, pngs.len()));
            files.extend(pngs);
            class_names.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
        let decoded: Vec<_> = files.par_iter().map(read_png).collect::<Result<_>>()?;
        let shape = decoded[0].shape();
        let mut images = Vec::with_capacity(decoded.len() * shape.iter().product::<usize>());
        for (img, path) in decoded.iter().zip(&files) {
            if img.shape() != shape {
                return Err(Error::format(
                    path,
                    format!(
                        "image has shape [C, H, W] = {:?}, but {} has {shape:?}; all images must share one shape",
                        img.shape(),
                        files[0].display()
                    ),
                ));
            }
            images.extend_from_slice(&img.data);
        }
        Ok(ImageFolder {
            class_names,
            files,
            shape,
            images,
            labels,
        })
    }

    /// Class names (sub-folder names), indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Image files, indexed like the dataset.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Dataset for ImageFolder {
    fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32] /* [C, H, W] */) -> Result<usize> {
        let n = self.sample_len();
        check_get_args("image folder", index, self.len(), x_out, n)?;
        x_out.copy_from_slice(&self.images[index * n..(index + 1) * n]);
        if draw_flip(rng) {
            flip_horizontal(x_out, self.shape[2]);
        }
        Ok(self.labels[index])
    }
}
