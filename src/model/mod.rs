//! SiT and TiT networks with their parameters on a backend: construction (reference
//! init or safetensors weights), inference, training forward and hand-written backward.
//! The layers themselves are in [`network`]; the activation workspace in [`acts`].

pub mod acts;
pub mod config;
pub mod embed;
pub mod init;
pub mod network;
pub mod weights;

use std::path::Path;

use crate::backend::Backend;
use crate::denoiser::Denoiser;
use crate::error::{check_finite, check_len, Error, Result};
use crate::layout::ParamLayout;
use acts::{Acts, GradScratch};
use config::{Arch, ModelConfig};
use network::{Fixed, Ranges};

/// A network and its parameters on backend `B`.
///
/// One model is used by one thread at a time; different models share nothing but
/// what their backends share (a CPU backend clone shares its thread pool).
pub struct Model<B: Backend> {
    cfg: ModelConfig,
    layout: ParamLayout,
    ranges: Ranges,
    backend: B,
    params: B::Buf,
    grads: Option<B::Buf>,
    fixed: Fixed<B>,
    acts: Option<Acts<B>>,
    scratch: Option<GradScratch<B>>,
    /// Labels of the last training-mode forward (None: no backward possible).
    train_labels: Option<Vec<usize>>,
}

impl<B: Backend + Clone> Model<B> {
    /// A model with the reference's from-scratch initialisation, seeded.
    pub fn init(cfg: ModelConfig, backend: B, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let layout = ParamLayout::for_config(&cfg);
        let p = init::reference_init(&layout, seed);
        Self::from_params(cfg, backend, &p)
    }

    /// A model holding the given flat parameters (in [`ParamLayout`] order).
    pub fn from_params(cfg: ModelConfig, backend: B, params: &[f32]) -> Result<Self> {
        cfg.validate()?;
        let layout = ParamLayout::for_config(&cfg);
        check_len("parameters", params.len(), layout.total())?;
        let ranges = Ranges::new(&cfg, &layout);
        let pos = embed::pos_embed(&cfg);
        let (cos, sin) = match cfg.arch {
            Arch::Tit => embed::rope_tables(&cfg),
            Arch::Sit => (vec![0.0], vec![0.0]),
        };
        let fixed = Fixed {
            pos_embed: backend.upload(&pos)?,
            rope_cos: backend.upload(&cos)?,
            rope_sin: backend.upload(&sin)?,
        };
        let params = backend.upload(params)?;
        Ok(Model {
            cfg,
            layout,
            ranges,
            backend,
            params,
            grads: None,
            fixed,
            acts: None,
            scratch: None,
            train_labels: None,
        })
    }

    /// Loads a safetensors weights file (strict by name and shape). The configuration
    /// comes from the file's `ucgm_config` metadata when present, else it is inferred
    /// from the tensor shapes; `heads` is then needed unless the width is a named size.
    pub fn load(path: impl AsRef<Path>, backend: B, heads: Option<usize>) -> Result<Self> {
        let file = crate::tensor_file::TensorFile::open(path)?;
        let cfg = weights::config_of(&file, heads)?;
        weights::check_no_extras(&file, &cfg)?;
        let params = weights::read_params(&file, &cfg, "")?;
        Self::from_params(cfg, backend, &params)
    }

    /// Loads weights for a known configuration (strict by name and shape).
    pub fn load_with_config(path: impl AsRef<Path>, cfg: ModelConfig, backend: B) -> Result<Self> {
        let file = crate::tensor_file::TensorFile::open(path)?;
        weights::check_no_extras(&file, &cfg)?;
        let params = weights::read_params(&file, &cfg, "")?;
        Self::from_params(cfg, backend, &params)
    }

    /// Saves the weights as safetensors (reference names, plus `pos_embed` and, for TiT,
    /// the RoPE buffers), atomically, with the configuration in the metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = self.read_params()?;
        weights::save(path.as_ref(), &self.cfg, &self.layout, &p)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    /// The parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// Flat parameter buffer.
    pub fn params(&self) -> &B::Buf {
        &self.params
    }
    /// Flat parameter buffer, writable (drops saved activations).
    pub fn params_mut(&mut self) -> &mut B::Buf {
        self.train_labels = None;
        &mut self.params
    }
    /// Flat gradient buffer (allocated, zeroed, on first use).
    pub fn grads(&mut self) -> Result<&B::Buf> {
        self.ensure_grads()?;
        Ok(self.grads.as_ref().expect("grads"))
    }
    /// Parameters (read-only) and gradients (writable) at once, for optimizer updates.
    pub fn params_and_grads_mut(&mut self) -> Result<(&mut B::Buf, &mut B::Buf)> {
        self.ensure_grads()?;
        self.train_labels = None;
        Ok((&mut self.params, self.grads.as_mut().expect("grads")))
    }
    /// Sets every gradient to zero.
    pub fn zero_grads(&mut self) -> Result<()> {
        self.ensure_grads()?;
        let n = self.layout.total();
        let g = self.grads.as_mut().expect("grads");
        self.backend.zero(self.backend.dst(g, 0..n));
        Ok(())
    }
    /// Copies the parameters to the host.
    pub fn read_params(&self) -> Result<Vec<f32>> {
        self.backend.read(&self.params, 0..self.layout.total())
    }
    /// Copies the gradients to the host.
    pub fn read_grads(&mut self) -> Result<Vec<f32>> {
        self.ensure_grads()?;
        self.backend.read(self.grads.as_ref().expect("grads"), 0..self.layout.total())
    }
    /// Overwrites the parameters from the host.
    pub fn write_params(&mut self, p: &[f32]) -> Result<()> {
        check_len("parameters", p.len(), self.layout.total())?;
        self.train_labels = None;
        self.backend.write(&mut self.params, 0, p)
    }

    fn ensure_grads(&mut self) -> Result<()> {
        if self.grads.is_none() {
            self.grads = Some(self.backend.zeros(self.layout.total())?);
        }
        Ok(())
    }

    /// Validates inputs, uploads them and (re)allocates the workspace. Returns the batch.
    fn stage(&mut self, x: &[f32], t: &[f32], labels: &[usize], out_len: usize, train: bool) -> Result<usize> {
        let b = t.len();
        if b == 0 {
            return Err(Error::invalid("batch is empty (t has length 0)"));
        }
        check_len("x", x.len(), b * self.cfg.image_len())?;
        check_len("labels", labels.len(), b)?;
        check_len("out", out_len, b * self.cfg.image_len())?;
        check_finite("x", x)?;
        check_finite("t", t)?;
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > self.cfg.num_classes) {
            return Err(Error::invalid(format!(
                "labels[{i}] = {l} out of range 0..={} ({} = null class)",
                self.cfg.num_classes, self.cfg.num_classes
            )));
        }
        let fits = matches!(&self.acts, Some(a) if a.batch == b && a.train == train);
        if !fits {
            self.acts = None; // free first: peak memory is one workspace
            self.acts = Some(Acts::new(&self.backend, &self.cfg, b, train)?);
        }
        let acts = self.acts.as_mut().expect("acts");
        self.backend.write(&mut acts.img, 0, x)?;
        self.backend.write(&mut acts.tfeat, 0, &embed::timestep_features(t))?;
        Ok(b)
    }

    fn run_forward(&mut self, external: Option<&B::Buf>, labels: &[usize], out: &mut [f32]) -> Result<()> {
        let params = external.unwrap_or(&self.params);
        let acts = self.acts.as_mut().expect("staged");
        network::forward(&self.backend, &self.cfg, &self.ranges, params, &self.fixed, acts, labels);
        let v = self.backend.read(&acts.out, 0..out.len())?;
        out.copy_from_slice(&v);
        Ok(())
    }

    /// Inference: out = F(x, t, labels). x, out: [B, C, H, W]; t: [B]; labels: [B] in 0..=K.
    pub fn forward(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.train_labels = None;
        self.stage(x, t, labels, out.len(), false)?;
        self.run_forward(None, labels, out)
    }

    /// Inference with another parameter buffer of the same layout (an EMA or teacher copy).
    pub fn forward_with(&mut self, params: &B::Buf, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        check_len("parameter buffer", self.backend.len(params), self.layout.total())?;
        self.train_labels = None;
        self.stage(x, t, labels, out.len(), false)?;
        self.run_forward(Some(params), labels, out)
    }

    /// Training forward: like [`Model::forward`] but keeps every activation for
    /// [`Model::backward`].
    pub fn forward_train(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.train_labels = None;
        self.stage(x, t, labels, out.len(), true)?;
        self.run_forward(None, labels, out)?;
        self.train_labels = Some(labels.to_vec());
        Ok(())
    }

    /// Backward of the last [`Model::forward_train`]: parameter gradients += ∂L/∂θ for
    /// dout = ∂L/∂F [B, C, H, W]; if `dx` is given it receives ∂L/∂x [B, C, H, W].
    pub fn backward(&mut self, dout: &[f32], dx: Option<&mut [f32]>) -> Result<()> {
        let labels = self
            .train_labels
            .clone()
            .ok_or_else(|| Error::invalid("backward needs a forward_train first (parameters or inputs changed since)"))?;
        let b = labels.len();
        check_len("dout", dout.len(), b * self.cfg.image_len())?;
        if let Some(dx) = dx.as_ref() {
            check_len("dx", dx.len(), b * self.cfg.image_len())?;
        }
        check_finite("dout", dout)?;
        self.ensure_grads()?;
        if !matches!(&self.scratch, Some(s) if s.batch == b) {
            self.scratch = None;
            self.scratch = Some(GradScratch::new(&self.backend, &self.cfg, b)?);
        }
        let g = self.scratch.as_mut().expect("scratch");
        self.backend.write(&mut g.dout, 0, dout)?;
        let acts = self.acts.as_ref().expect("acts");
        let grads = self.grads.as_mut().expect("grads");
        network::backward(
            &self.backend,
            &self.cfg,
            &self.ranges,
            &self.params,
            &self.fixed,
            acts,
            &labels,
            grads,
            g,
            dx.is_some(),
        );
        if let Some(dx) = dx {
            let v = self.backend.read(&g.dimg, 0..dx.len())?;
            dx.copy_from_slice(&v);
        }
        Ok(())
    }

    /// Frees the activation workspace (it is re-allocated on the next call).
    pub fn release_workspace(&mut self) {
        self.acts = None;
        self.scratch = None;
        self.train_labels = None;
    }
}

impl<B: Backend + Clone> Denoiser for Model<B> {
    fn sample_shape(&self) -> [usize; 3] {
        [self.cfg.in_channels, self.cfg.input_size, self.cfg.input_size]
    }
    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.forward(x, t, labels, out)
    }
}
