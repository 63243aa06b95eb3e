//! `ucgm fid A B`: the Fréchet Inception Distance between two sets of images, each
//! given as a folder of PNG images (non-recursive, sorted by name, as pytorch-fid lists
//! a folder), a statistics `.npz` (`mu`, `sigma`), or a samples safetensors file (the
//! `samples` tensor `[N, 3, H, W]` in [−1, 1] that `ucgm sample` writes for pixel
//! models). Images of different sizes in one folder are fine (each is resized to
//! 299×299 by the network, as pytorch-fid does); grayscale PNGs are repeated to RGB.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fid::{read_stats_npz, FeatureStats};
use crate::image::decode::{read_rgb8, Rgb8Image};
use crate::metric::GaussianStats;
use crate::model::inception::{FidInception, InceptionInput, POOL3_DIM};
use crate::tensor_file::TensorFile;

/// One side of `ucgm fid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FidSource {
    /// A statistics `.npz`.
    Stats(PathBuf),
    /// A folder of PNG images.
    Folder(PathBuf),
    /// A samples safetensors file.
    Samples(PathBuf),
}

impl FidSource {
    /// Tells the kind of `path`: a directory, a `.npz`, or a `.safetensors` file.
    pub fn classify(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Ok(FidSource::Folder(path));
        }
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("npz") => Ok(FidSource::Stats(path)),
            Some("safetensors") => Ok(FidSource::Samples(path)),
            _ if !path.exists() => Err(Error::io(&path, std::io::Error::from(std::io::ErrorKind::NotFound))),
            _ => Err(Error::invalid(format!(
                "{}: expected a folder of PNG images, a statistics .npz or a samples .safetensors",
                path.display()
            ))),
        }
    }

    /// Whether this side needs the Inception network.
    pub fn needs_network(&self) -> bool {
        !matches!(self, FidSource::Stats(_))
    }
}

/// Sorted PNG and JPEG files (`.png`, `.jpg`, `.jpeg`) directly in `dir`; fewer than two
/// is an error.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let image = matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"));
        if image && p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            files.push(p);
        }
    }
    files.sort();
    if files.len() < 2 {
        return Err(Error::invalid(format!(
            "{}: {} PNG/JPEG image(s); FID needs at least 2",
            dir.display(),
            files.len()
        )));
    }
    Ok(files)
}

/// Converts 8-bit RGB pixels `[H, W, 3]` to the network's input range, `[3, H, W]`, as
/// the two tools read image files: pytorch-fid's `ToTensor` (v / 255) or torch-fidelity's
/// uint8 values.
fn rgb8_to_network(img: &Rgb8Image, input: InceptionInput, out: &mut Vec<f32>) {
    for ch in 0..3 {
        out.extend(img.pixels.chunks_exact(3).map(|px| match input {
            InceptionInput::PytorchFid => px[ch] as f32 / 255.0,
            InceptionInput::TorchFidelity => px[ch] as f32,
        }));
    }
}

/// Converts pixels in [−1, 1] to the network's input range (RGB, `[3, H, W]`).
fn to_network_range(data: &[f32], channels: usize, hw: usize, input: InceptionInput, out: &mut Vec<f32>) {
    for ch in 0..3 {
        let src = &data[(ch % channels) * hw..(ch % channels + 1) * hw];
        out.extend(src.iter().map(|&v| match input {
            InceptionInput::PytorchFid => ((v + 1.0) * 0.5).clamp(0.0, 1.0),
            // uint8 values as torch-fidelity reads them.
            InceptionInput::TorchFidelity => ((v + 1.0) * 127.5).round().clamp(0.0, 255.0),
        }));
    }
}

/// Accumulates features (and logits, when `logits` is given) of a source that has
/// images; `progress(done, total)` after each batch.
pub fn accumulate_source<B: Backend>(
    src: &FidSource,
    net: &FidInception<B>,
    batch: usize,
    stats: &mut FeatureStats,
    mut logits: Option<&mut Vec<f32>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let batch = batch.max(1);
    let mut run = |images: &[f32], n: usize, h: usize, w: usize| -> Result<()> {
        let out = net.forward(images, n, h, w)?;
        stats.add_f32(&out.pool3)?;
        if let Some(l) = logits.as_deref_mut() {
            l.extend_from_slice(&out.logits_unbiased);
        }
        Ok(())
    };
    match src {
        FidSource::Stats(p) => Err(Error::invalid(format!("{}: a statistics file has no images", p.display()))),
        FidSource::Folder(dir) => {
            let files = list_images(dir)?;
            let total = files.len();
            let mut buf = Vec::new();
            let (mut cur, mut count) = ((0, 0), 0);
            let mut done = 0;
            for f in &files {
                let img = read_rgb8(f)?;
                let size = (img.height, img.width);
                if count > 0 && (size != cur || count == batch) {
                    run(&buf, count, cur.0, cur.1)?;
                    done += count;
                    progress(done, total);
                    buf.clear();
                    count = 0;
                }
                cur = size;
                rgb8_to_network(&img, net.input(), &mut buf);
                count += 1;
            }
            run(&buf, count, cur.0, cur.1)?;
            progress(total, total);
            Ok(())
        }
        FidSource::Samples(p) => {
            let tf = TensorFile::open(p)?;
            let name = ["samples", "images"]
                .into_iter()
                .find(|n| tf.contains(n))
                .ok_or_else(|| Error::format(p, "no 'samples' or 'images' tensor (a latent samples file must be decoded by the VAE first)"))?;
            let (shape, data) = tf.f32(name)?;
            let &[n, c, h, w] = shape.as_slice() else {
                return Err(Error::format(p, format!("'{name}' has shape {shape:?}, expected [N, 3, H, W]")));
            };
            if c != 3 && c != 1 {
                return Err(Error::format(
                    p,
                    format!("'{name}' has {c} channels; pixels have 1 or 3 (latents need the VAE)"),
                ));
            }
            let per = c * h * w;
            let mut buf = Vec::new();
            for start in (0..n).step_by(batch) {
                let m = batch.min(n - start);
                buf.clear();
                for i in start..start + m {
                    to_network_range(&data[i * per..(i + 1) * per], c, h * w, net.input(), &mut buf);
                }
                run(&buf, m, h, w)?;
                progress(start + m, n);
            }
            Ok(())
        }
    }
}

/// The Gaussian statistics of one side (`net` is needed unless it is a `.npz`).
pub fn source_stats<B: Backend>(src: &FidSource, net: Option<&FidInception<B>>, batch: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<GaussianStats> {
    match src {
        FidSource::Stats(p) => read_stats_npz(p),
        _ => {
            let net = net.ok_or_else(|| Error::invalid("an Inception weights file (--inception) is needed for images"))?;
            let mut stats = FeatureStats::new(POOL3_DIM)?;
            accumulate_source(src, net, batch, &mut stats, None, progress)?;
            stats.finish()
        }
    }
}
