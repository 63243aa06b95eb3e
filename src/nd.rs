//! ndarray interop (feature `ndarray`, on by default): the image, latent and sampling
//! calls with `ndarray` arrays in and out, next to the flat-slice API. Arrays are
//! standard-layout NCHW `f32`; a non-contiguous view is copied once.
//!
//! ```no_run
//! # fn main() -> ucgm::Result<()> {
//! use ucgm::{engine::AnyVae, AnyBackend};
//! let mut vae = AnyVae::load("vae.safetensors", AnyBackend::cpu(0)?)?;
//! let img = ucgm::nd::load_image("photo.jpg", 256)?.insert_axis(ndarray::Axis(0)); // [1, 3, 256, 256]
//! let (mean, _logvar) = ucgm::nd::encode(&mut vae, img.view())?;
//! let back = ucgm::nd::decode(&mut vae, mean.view())?; // [1, 3, 256, 256], not clamped
//! # let _ = back; Ok(()) }
//! ```

use ndarray::{Array3, Array4, ArrayView4};

use crate::denoiser::Denoiser;
use crate::engine::AnyVae;
use crate::error::{Error, Result};
use crate::latent_norm::LatentNorm;
use crate::sampler::SamplerConfig;

/// A flat `[N, C, H, W]` buffer as an array.
pub fn to_array4(data: Vec<f32>, shape: [usize; 4]) -> Result<Array4<f32>> {
    Array4::from_shape_vec(shape, data).map_err(|e| Error::invalid(format!("array of shape {shape:?}: {e}")))
}

fn flat(a: &ArrayView4<f32>) -> (Vec<f32>, [usize; 4]) {
    let d = a.dim();
    (a.iter().copied().collect(), [d.0, d.1, d.2, d.3])
}

/// Reads a PNG or JPEG and preprocesses it as the reference does (`center_crop_arr`,
/// RGB in [−1, 1]): `[3, size, size]`.
pub fn load_image(path: impl AsRef<std::path::Path>, size: usize) -> Result<Array3<f32>> {
    let v = crate::image::center_crop::load_preprocessed(path.as_ref(), size)?;
    Array3::from_shape_vec((3, size, size), v).map_err(|e| Error::Internal(e.to_string()))
}

/// [`AnyVae::encode`]: images `[N, 3, H, W]` in [−1, 1] → (mean, log-variance), each
/// `[N, z, H/f, W/f]`, raw (unnormalised) latents.
pub fn encode(vae: &mut AnyVae, images: ArrayView4<f32>) -> Result<(Array4<f32>, Array4<f32>)> {
    let (x, [n, _, h, w]) = flat(&images);
    let p = vae.encode(&x, n, h, w)?;
    let shape = [p.n, p.z, p.h, p.w];
    Ok((to_array4(p.mean, shape)?, to_array4(p.logvar, shape)?))
}

/// [`AnyVae::decode`]: raw latents `[N, z, h, w]` → images `[N, 3, h·f, w·f]` (not clamped).
pub fn decode(vae: &mut AnyVae, latents: ArrayView4<f32>) -> Result<Array4<f32>> {
    let (x, [n, _, h, w]) = flat(&latents);
    let f = vae.config().downsample_factor();
    let oc = vae.config().out_channels;
    to_array4(vae.decode(&x, n, h, w)?, [n, oc, h * f, w * f])
}

/// Model-space latents `[N, C, H, W]` → images: `norm` inverted, then decoded.
pub fn decode_normalized(vae: &mut AnyVae, norm: &LatentNorm, latents: ArrayView4<f32>) -> Result<Array4<f32>> {
    let (x, shape) = flat(&latents);
    let f = vae.config().downsample_factor();
    let out = crate::app::decode::decode_latents(vae, norm, &x, shape)?;
    to_array4(out, [shape[0], vae.config().out_channels, shape[2] * f, shape[3] * f])
}

/// UCGM-S samples, one per label, with noise from `seed` (as `ucgm sample`): `[N, C, H, W]`.
pub fn sample(net: &mut dyn Denoiser, cfg: &SamplerConfig, labels: &[usize], seed: u64) -> Result<Array4<f32>> {
    let [c, h, w] = net.sample_shape();
    let v = crate::app::sample::sample_images(net, cfg, labels, seed, None)?;
    to_array4(v, [labels.len(), c, h, w])
}

/// Images `[N, 3, H, W]` (decoder output) → 8-bit `[N, H, W, 3]` as the reference saves
/// them (clamp((x + 1)/2, 0, 1), floor(·255 + 0.5)).
pub fn to_rgb8(images: ArrayView4<f32>) -> Result<Array4<u8>> {
    let (x, [n, c, h, w]) = flat(&images);
    let bytes: Vec<u8> = crate::app::decode::to_rgb8(&x, [n, c, h, w])?.concat();
    Array4::from_shape_vec((n, h, w, 3), bytes).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_match_the_flat_api() {
        let backend = crate::AnyBackend::cpu(1).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/vae_tiny_diffusers.safetensors");
        let mut vae = AnyVae::load(&path, backend).unwrap();
        let mut rng = crate::Rng::new(3);
        let x: Vec<f32> = rng.normal_f32(2 * 3 * 8 * 8).iter().map(|v| v.tanh()).collect();
        let a = to_array4(x.clone(), [2, 3, 8, 8]).unwrap();
        let (mean, logvar) = encode(&mut vae, a.view()).unwrap();
        let p = vae.encode(&x, 2, 8, 8).unwrap();
        assert_eq!(mean.dim(), (2, 4, 2, 2));
        assert_eq!(mean.as_slice().unwrap(), &p.mean[..]);
        assert_eq!(logvar.as_slice().unwrap(), &p.logvar[..]);
        let img = decode(&mut vae, mean.view()).unwrap();
        assert_eq!(img.dim(), (2, 3, 8, 8));
        assert_eq!(img.as_slice().unwrap(), &vae.decode(&p.mean, 2, 2, 2).unwrap()[..]);
        // A transposed (non-standard-layout) view is taken in logical order.
        let t = a.clone().permuted_axes([0, 1, 3, 2]);
        let (mt, _) = encode(&mut vae, t.view()).unwrap();
        let tx: Vec<f32> = t.iter().copied().collect();
        assert_eq!(mt.as_slice().unwrap(), &vae.encode(&tx, 2, 8, 8).unwrap().mean[..]);
        let b = to_rgb8(img.view()).unwrap();
        assert_eq!(b.dim(), (2, 8, 8, 3));
        assert_eq!(b[[1, 2, 3, 1]], crate::image::decoded_to_u8(img[[1, 1, 2, 3]]));
        assert!(to_array4(vec![0.0; 3], [1, 1, 1, 2]).is_err());
    }
}
