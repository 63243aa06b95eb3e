//! The latent autoencoder (AutoencoderKL of latent diffusion: SD-VAE, VA-VAE, E2E-VAE),
//! forward only, on any backend: loading from diffusers-, legacy-diffusers- or
//! LDM-named safetensors files (configuration inferred from the tensors), encoding images
//! to the posterior (mean, log-variance) and decoding latents to images.
//!
//! Latents here are the VAE's raw latents: no scaling factor or statistics are applied
//! (that normalisation belongs to the caller, spec §4.6). Batches are processed in
//! chunks of images whose activations fit in [`Vae::set_activation_budget`] elements
//! (at least one image at a time), so memory stays bounded for any batch.

pub mod config;
pub mod naming;
pub mod network;

use std::collections::HashMap;
use std::path::Path;

use crate::backend::Backend;
use crate::control::RunControl;
use crate::error::{check_finite, check_len, Error, Result};
use crate::tensor_file::TensorFile;
pub use config::VaeConfig;
pub use naming::VaeNaming;
use network::{Net, ParamIndex, Work};

/// Log-variance clamp of the posterior (diffusers / LDM `DiagonalGaussianDistribution`).
pub const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

/// Default cap on the elements of the three activation buffers together (1 GiB of f32).
pub const DEFAULT_ACTIVATION_BUDGET: usize = 1 << 28;

/// The encoder's posterior: mean and log-variance, each [n, z, h, w].
#[derive(Clone, Debug, PartialEq)]
pub struct Posterior {
    /// [n, z, h, w].
    pub mean: Vec<f32>,
    /// [n, z, h, w], clamped to [`LOGVAR_RANGE`].
    pub logvar: Vec<f32>,
    pub n: usize,
    pub z: usize,
    pub h: usize,
    pub w: usize,
}

/// An AutoencoderKL with its parameters on backend `B`.
pub struct Vae<B: Backend> {
    cfg: VaeConfig,
    naming: VaeNaming,
    idx: ParamIndex,
    params: B::Buf,
    backend: B,
    budget: usize,
    /// The activation workspace of the last call, kept for the next (reused when large
    /// enough): a 256 px SD-VAE call needs three 33 MB maps, and fresh pages cost a
    /// fault each on every call.
    work: Option<Work<B>>,
}

impl<B: Backend + Clone> Vae<B> {
    /// Loads a safetensors VAE in any of the [`VaeNaming`] schemes (f32, f16 or bf16),
    /// inferring the configuration from the tensors (GroupNorm groups from the file's
    /// `config` metadata `norm_num_groups` when present, else 32). Strict: a missing,
    /// mis-shaped or unknown tensor is an error naming it; training-only keys (loss,
    /// discriminator, VF-loss projection) are ignored and listed in one log line.
    pub fn load(path: impl AsRef<Path>, backend: B) -> Result<Self> {
        let path = path.as_ref();
        let tf = TensorFile::open(path)?;
        let bad = |msg: String| Error::format(path, msg);
        let all: Vec<&str> = tf.names().iter().map(String::as_str).collect();
        let (ignored, names): (Vec<&str>, Vec<&str>) = all.iter().partition(|n| naming::is_training_only(n));
        let Some(naming) = naming::detect(&names) else {
            let example = names.first().copied().unwrap_or("(no tensors)");
            return Err(bad(format!(
                "not a VAE: no encoder/decoder tensors under diffusers or LDM names (found e.g. {example:?}; a DiT/SiT weights file is loaded as a model, not as a VAE)"
            )));
        };
        let levels = naming::ldm_levels(&names);
        let mut canon: HashMap<String, &str> = HashMap::new();
        for &n in &names {
            let c = naming::canonical(n, naming, levels).ok_or_else(|| bad(format!("unknown tensor {n:?} for a VAE file with {naming:?} names")))?;
            if let Some(prev) = canon.insert(c.clone(), n) {
                return Err(bad(format!("tensors {prev:?} and {n:?} both name {c:?}")));
            }
        }
        let shapes: HashMap<String, Vec<usize>> = canon.iter().map(|(c, &n)| Ok((c.clone(), tf.shape(n)?))).collect::<Result<_>>()?;
        let groups = tf
            .metadata()
            .get("config")
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|v| v.get("norm_num_groups")?.as_u64())
            .map(|g| g as usize);
        let cfg = VaeConfig::from_tensor_shapes(&shapes, groups).map_err(|e| bad(e.to_string()))?;
        let expected = cfg.tensor_shapes();
        let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let mut unknown: Vec<(&String, &&str)> = canon.iter().filter(|(c, _)| !known.contains(c.as_str())).collect();
        unknown.sort();
        if let Some((c, n)) = unknown.first() {
            return Err(bad(format!(
                "unknown tensor {n:?} (as {c:?}) for the network its other tensors imply ({cfg:?})"
            )));
        }
        if !ignored.is_empty() {
            eprintln!(
                "ucgm: VAE {}: ignored {} training-only tensors: {}",
                path.display(),
                ignored.len(),
                ignored.join(", ")
            );
        }
        Self::from_fn(cfg, naming, backend, |name, shape| {
            let file_name = canon.get(name).ok_or_else(|| bad(format!("tensor {name:?} is missing")))?;
            let (got, data) = tf.f32(file_name)?;
            let same = got == shape || (shape.len() == 2 && got.len() == 4 && got[..2] == shape[..] && got[2] == 1 && got[3] == 1);
            if !same {
                return Err(bad(format!("tensor {file_name:?} has shape {got:?}, expected {shape:?}")));
            }
            Ok(data)
        })
    }

    /// A VAE whose tensors (canonical diffusers names, [`VaeConfig::tensor_shapes`]) come
    /// from `get(name, shape)`, which returns exactly `shape`'s element count.
    pub fn from_fn(cfg: VaeConfig, naming: VaeNaming, backend: B, mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Self> {
        cfg.validate()?;
        let idx = ParamIndex::new(&cfg);
        let mut host = crate::limits::try_vec::<f32>("VAE parameters", idx.total())?;
        for (name, shape) in cfg.tensor_shapes() {
            let data = get(&name, &shape)?;
            let r = idx.get(&name);
            check_len(&format!("VAE tensor {name}"), data.len(), r.len())?;
            host[r].copy_from_slice(&data);
        }
        let params = backend.upload_owned(host)?;
        Ok(Vae {
            cfg,
            naming,
            idx,
            params,
            backend,
            budget: DEFAULT_ACTIVATION_BUDGET,
            work: None,
        })
    }

    /// A VAE from canonical-named tensors (tests, converters).
    pub fn from_tensors(cfg: VaeConfig, backend: B, tensors: &HashMap<String, Vec<f32>>) -> Result<Self> {
        Self::from_fn(cfg, VaeNaming::Diffusers, backend, |name, _| {
            tensors
                .get(name)
                .cloned()
                .ok_or_else(|| Error::Weights(format!("VAE tensor {name:?} is missing")))
        })
    }

    /// A VAE with seeded random weights in the reference's test initialisation
    /// (conv/linear weights N(0, 1/fan_in), biases N(0, 0.1²), GroupNorm weight 1 + N(0, 0.25²),
    /// bias N(0, 0.25²)): for benchmarks and shape tests without a weights file.
    pub fn random(cfg: VaeConfig, backend: B, seed: u64) -> Result<Self> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Self::from_fn(cfg, VaeNaming::Diffusers, backend, |name, shape| {
            let len: usize = shape.iter().product();
            let is_norm = name.contains("norm");
            let (mean, std) = match (is_norm, name.ends_with(".weight"), shape.len()) {
                (true, true, _) => (1.0, 0.25),
                (true, false, _) => (0.0, 0.25),
                (false, true, _) => (0.0, 1.0 / (shape[1..].iter().product::<usize>() as f64).sqrt()),
                (false, false, _) => (0.0, 0.1),
            };
            let d = Normal::new(mean, std).map_err(|e| Error::invalid(e.to_string()))?;
            Ok((0..len).map(|_| d.sample(&mut rng) as f32).collect())
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The naming scheme the weights were loaded from.
    pub fn naming(&self) -> VaeNaming {
        self.naming
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Bytes of the parameters (f32).
    pub fn weight_bytes(&self) -> usize {
        self.idx.total() * 4
    }

    /// Caps the elements of the activation workspace (three buffers): batches run in
    /// chunks of as many images as fit, at least one. Releases the kept workspace.
    pub fn set_activation_budget(&mut self, elems: usize) {
        self.budget = elems.max(1);
        self.work = None;
    }

    /// Bytes of the activation workspace kept from the last call (0 before the first).
    pub fn workspace_bytes(&self) -> usize {
        self.work.as_ref().map_or(0, |w| 4 * self.backend.len(&w.x) * 3)
    }

    /// Frees the kept activation workspace (the next call allocates it again).
    pub fn release_workspace(&mut self) {
        self.work = None;
    }

    /// Images per chunk for `h`×`w` pixel images, and the per-image workspace size.
    fn chunking(&self, n: usize, h: usize, w: usize) -> Result<(usize, usize)> {
        let per = self.cfg.max_activation(h, w);
        let nb = (self.budget / (3 * per).max(1)).clamp(1, n.max(1));
        crate::limits::check_bytes("VAE activations", 3 * nb * per, 4)?;
        crate::limits::check_bytes("VAE convolution scratch for one output row", self.cfg.conv_row_scratch(w), 4)?;
        Ok((nb, per))
    }

    fn check_image_size(&self, what: &str, h: usize, w: usize) -> Result<()> {
        let f = self.cfg.downsample_factor();
        if h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(Error::invalid(format!(
                "{what} {h}×{w}: height and width must be positive multiples of the VAE's downsampling factor {f}"
            )));
        }
        if h.checked_mul(w).is_none_or(|p| p > 1 << 26) {
            return Err(Error::invalid(format!("{what} {h}×{w}: too large")));
        }
        Ok(())
    }

    /// Encodes images [n, in_channels, h, w] in [−1, 1] (h, w multiples of the
    /// downsampling factor f) to the posterior: mean and log-variance, each
    /// [n, z, h/f, w/f], log-variance clamped to [−30, 20].
    pub fn encode(&mut self, images: &[f32], n: usize, h: usize, w: usize) -> Result<Posterior> {
        self.encode_with(images, n, h, w, &mut RunControl::default())
    }

    /// [`Vae::encode`] with cancellation and progress (images done, total) after every
    /// chunk of images.
    pub fn encode_with(&mut self, images: &[f32], n: usize, h: usize, w: usize, ctl: &mut RunControl<'_>) -> Result<Posterior> {
        ctl.check()?;
        self.check_image_size("image", h, w)?;
        let cin = self.cfg.in_channels;
        let img = cin * h * w;
        check_len(
            "images",
            images.len(),
            n.checked_mul(img).ok_or_else(|| Error::invalid("image batch too large"))?,
        )?;
        check_finite("images", images)?;
        let f = self.cfg.downsample_factor();
        let (z, lh, lw) = (self.cfg.latent_channels, h / f, w / f);
        let lat = z * lh * lw;
        let mut mean = crate::limits::try_vec::<f32>("posterior mean", n * lat)?;
        let mut logvar = crate::limits::try_vec::<f32>("posterior log-variance", n * lat)?;
        let (nb, per) = self.chunking(n, h, w)?;
        let mut wk = self.workspace(nb, per)?;
        let mut b0 = 0;
        while b0 < n {
            let cnt = nb.min(n - b0);
            self.backend.write(&mut wk.x, 0, &images[b0 * img..(b0 + cnt) * img])?;
            (wk.nb, wk.c, wk.h, wk.w) = (cnt, cin, h, w);
            self.run(|net| net.encode(&mut wk))?;
            let out = self.backend.read(&wk.x, 0..cnt * 2 * lat)?;
            for (k, o) in out.chunks_exact(2 * lat).enumerate() {
                let i = b0 + k;
                mean[i * lat..(i + 1) * lat].copy_from_slice(&o[..lat]);
                for (d, &s) in logvar[i * lat..(i + 1) * lat].iter_mut().zip(&o[lat..]) {
                    *d = s.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1);
                }
            }
            b0 += cnt;
            ctl.step(b0, n)?;
        }
        self.work = Some(wk);
        check_finite("VAE posterior mean", &mean)?;
        Ok(Posterior {
            mean,
            logvar,
            n,
            z,
            h: lh,
            w: lw,
        })
    }

    /// Decodes raw latents [n, z, h, w] (no scaling applied) to images
    /// [n, out_channels, h·f, w·f], not clamped.
    pub fn decode(&mut self, latents: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        self.decode_with(latents, n, h, w, &mut RunControl::default())
    }

    /// [`Vae::decode`] with cancellation and progress (images done, total) after every
    /// chunk of images.
    pub fn decode_with(&mut self, latents: &[f32], n: usize, h: usize, w: usize, ctl: &mut RunControl<'_>) -> Result<Vec<f32>> {
        ctl.check()?;
        let f = self.cfg.downsample_factor();
        if h == 0 || w == 0 {
            return Err(Error::invalid(format!("latent {h}×{w}: height and width must be positive")));
        }
        let (oh, ow) = (h.saturating_mul(f), w.saturating_mul(f));
        self.check_image_size("decoded image", oh, ow)?;
        let z = self.cfg.latent_channels;
        let lat = z * h * w;
        let want = n.checked_mul(lat).ok_or_else(|| Error::invalid("latent batch too large"))?;
        if latents.len() != want {
            return Err(Error::invalid(format!(
                "latents: {} elements, expected {n}×{z}×{h}×{w} = {want} (this VAE has {z} latent channels)",
                latents.len()
            )));
        }
        check_finite("latents", latents)?;
        let oc = self.cfg.out_channels;
        let img = oc * oh * ow;
        let mut out = crate::limits::try_vec::<f32>("decoded images", n * img)?;
        let (nb, per) = self.chunking(n, oh, ow)?;
        let mut wk = self.workspace(nb, per)?;
        let mut b0 = 0;
        while b0 < n {
            let cnt = nb.min(n - b0);
            self.backend.write(&mut wk.x, 0, &latents[b0 * lat..(b0 + cnt) * lat])?;
            (wk.nb, wk.c, wk.h, wk.w) = (cnt, z, h, w);
            self.run(|net| net.decode(&mut wk))?;
            let o = self.backend.read(&wk.x, 0..cnt * img)?;
            out[b0 * img..(b0 + cnt) * img].copy_from_slice(&o);
            b0 += cnt;
            ctl.step(b0, n)?;
        }
        self.work = Some(wk);
        check_finite("decoded images", &out)?;
        Ok(out)
    }

    /// The kept workspace if it holds `nb` images of `per` values, else a new one.
    fn workspace(&mut self, nb: usize, per: usize) -> Result<Work<B>> {
        if let Some(w) = self.work.take() {
            if self.backend.len(&w.x) >= nb * per {
                return Ok(w);
            }
        }
        Ok(Work {
            x: self.backend.zeros(nb * per)?,
            t1: self.backend.zeros(nb * per)?,
            t2: self.backend.zeros(nb * per)?,
            nb,
            c: 0,
            h: 0,
            w: 0,
        })
    }

    fn run(&self, f: impl FnOnce(&Net<'_, B>) -> Result<()> + Send) -> Result<()> {
        let net = Net {
            cfg: &self.cfg,
            idx: &self.idx,
            params: &self.params,
            be: &self.backend,
        };
        self.backend.scope(|| f(&net))
    }
}
