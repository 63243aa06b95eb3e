//! SiT, TiT, LightningDiT and DDT networks with their parameters on a backend:
//! construction (reference init or safetensors weights), inference, training forward and
//! hand-written backward. The layers themselves are in [`network`] (DDT's in [`ddt`]);
//! the activation workspace in [`acts`].

pub mod acts;
pub mod config;
pub mod ddt;
pub mod edm2;
pub mod embed;
pub mod inception;
pub mod init;
pub mod network;
pub mod vae;
pub mod weights;

use std::path::Path;

use crate::backend::{Backend, PackStep};
use crate::denoiser::Denoiser;
use crate::error::{check_finite, check_len, Error, Result};
use crate::layout::ParamLayout;
use acts::{Acts, GradScratch};
use config::{Arch, ModelConfig};
use network::{Fixed, LinearWeights, Ranges};

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
    /// Inference copy of the parameters with every Linear weight transposed, for
    /// backends that prefer it; `None` when stale (any write to the parameters).
    weights_t: Option<B::Buf>,
    /// Whether inference may build `weights_t` (costs one more parameter-sized buffer).
    weight_cache: bool,
    /// Inference layout: `params` itself holds every Linear weight in the form the
    /// backend's inference products want (no plain copy beside it).
    inference: Option<InferenceLayout<B>>,
}

/// How a model in the inference layout holds its parameters.
enum InferenceLayout<B: Backend> {
    /// Every Linear weight transposed in place; the buffer is a scratch of the largest
    /// Linear weight, for turning back to the plain layout without a fallible allocation.
    Transposed(B::Buf),
    /// A compact buffer with every Linear weight in the backend's packed form (the CPU's
    /// bf16 mode: half the bytes) and every other parameter in f32: `ranges` locate each
    /// parameter in it, `plan` maps the plain layout onto it (kept to turn back).
    Packed { ranges: Ranges, plan: Vec<PackStep> },
}

impl<B: Backend + Clone> Model<B> {
    /// A model with the reference's from-scratch initialisation, seeded.
    pub fn init(cfg: ModelConfig, backend: B, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let layout = ParamLayout::for_config(&cfg);
        // The initial values and the parameter buffer, before either is allocated.
        crate::limits::check_bytes("model parameters", layout.total(), 8)?;
        let p = init::reference_init(&layout, seed);
        Self::from_params_owned(cfg, backend, p)
    }

    /// A model holding the given flat parameters (in [`ParamLayout`] order).
    pub fn from_params(cfg: ModelConfig, backend: B, params: &[f32]) -> Result<Self> {
        let layout = ParamLayout::for_config(&cfg);
        check_len("parameters", params.len(), layout.total())?;
        let buf = backend.upload(params)?;
        Self::from_buffer(cfg, backend, buf)
    }

    /// [`Model::from_params`] taking the vector: on the CPU it becomes the parameter
    /// buffer without a copy (loading holds one copy of the weights, not two).
    pub fn from_params_owned(cfg: ModelConfig, backend: B, params: Vec<f32>) -> Result<Self> {
        let layout = ParamLayout::for_config(&cfg);
        check_len("parameters", params.len(), layout.total())?;
        let buf = backend.upload_owned(params)?;
        Self::from_buffer(cfg, backend, buf)
    }

    fn from_buffer(cfg: ModelConfig, backend: B, params: B::Buf) -> Result<Self> {
        cfg.validate()?;
        let layout = ParamLayout::for_config(&cfg);
        let ranges = Ranges::new(&cfg, &layout);
        let pos = if cfg.uses_pos_embed() { embed::pos_embed(&cfg) } else { vec![0.0] };
        let (cos, sin) = match cfg.arch {
            Arch::Tit | Arch::LightningDit => embed::rope_tables(&cfg),
            Arch::Ddt { .. } => embed::ddt_rope_tables(&cfg),
            Arch::Sit => (vec![0.0], vec![0.0]),
        };
        let fixed = Fixed {
            pos_embed: backend.upload(&pos)?,
            rope_cos: backend.upload(&cos)?,
            rope_sin: backend.upload(&sin)?,
        };
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
            weights_t: None,
            weight_cache: true,
            inference: None,
        })
    }

    /// Loads a safetensors weights file or a training checkpoint (its sampling EMA),
    /// strict by name and shape. The configuration comes from the file's `ucgm_config`
    /// metadata when present, else it is inferred from the tensor shapes; `heads` is then
    /// needed unless the width is a named size. See [`weights::load_file`] to choose a
    /// checkpoint's online or `mod` weights or to read the file's metadata.
    pub fn load(path: impl AsRef<Path>, backend: B, heads: Option<usize>) -> Result<Self> {
        let w = weights::load_file(path.as_ref(), heads, None)?;
        Self::from_params_owned(w.cfg, backend, w.params)
    }

    /// Loads weights for a known configuration (strict by name and shape).
    pub fn load_with_config(path: impl AsRef<Path>, cfg: ModelConfig, backend: B) -> Result<Self> {
        // (the checksum is verified by `read_params`, in its one pass over the data)
        let file = crate::tensor_file::TensorFile::open_header(path)?;
        weights::check_no_extras(&file, &cfg)?;
        let params = weights::read_params(&file, &cfg, "")?;
        Self::from_params_owned(cfg, backend, params)
    }

    /// Saves the weights as safetensors (reference names, plus `pos_embed` and, for TiT,
    /// the RoPE buffers), atomically, with the configuration in the metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_metadata(path, &Default::default())
    }

    /// [`Model::save`] with extra metadata entries (e.g. a sampler preset).
    pub fn save_with_metadata(&self, path: impl AsRef<Path>, extra: &std::collections::BTreeMap<String, String>) -> Result<()> {
        let p = self.read_params()?;
        weights::save_with_metadata(path.as_ref(), &self.cfg, &self.layout, &p, extra)
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
    /// Flat parameter buffer in the plain layout. A model in the inference layout (see
    /// [`Model::enter_inference_layout`]) must be turned back with
    /// [`Model::use_plain_layout`] first (a trainer does so when it takes the model).
    pub fn params(&self) -> &B::Buf {
        debug_assert!(self.inference.is_none(), "params() of a model in the inference layout");
        &self.params
    }
    /// Flat parameter buffer, writable, in the plain layout (drops saved activations).
    /// Fails only when a packed model cannot allocate its plain buffer.
    pub fn params_mut(&mut self) -> Result<&mut B::Buf> {
        self.use_plain_layout()?;
        self.train_labels = None;
        self.weights_t = None;
        Ok(&mut self.params)
    }

    /// Whether the parameters are held in the inference layout.
    pub fn in_inference_layout(&self) -> bool {
        self.inference.is_some()
    }

    /// Switches a model that only samples to the layout its GEMMs want, in place of the
    /// plain one (no second parameter-sized buffer):
    /// * on a backend with a packed weight form (the CPU in bf16 mode), a compact buffer
    ///   with every Linear weight packed in bf16: about half the bytes. Rewritten in place
    ///   and shrunk (the peak is the f32 weights plus one weight's scratch; beside the
    ///   plain buffer only for weights whose packed form would be larger). Reading
    ///   the parameters then gives the bf16-rounded weights, and turning back to the
    ///   plain layout (training, writes) starts from them;
    /// * on backends that prefer transposed weights, every Linear weight transposed in
    ///   place (exactly reversible).
    ///
    /// A no-op on other backends, with the weight cache off, or when already done.
    /// Gradients and training workspaces are released. Reading or writing parameters
    /// still works (converted on the fly); training turns the model back.
    pub fn enter_inference_layout(&mut self) -> Result<()> {
        if self.inference.is_some() || !self.weight_cache {
            return Ok(());
        }
        let packed = self.backend.packed_weight_len(1, 1).is_some();
        if !packed && !self.backend.prefers_transposed_weights() {
            return Ok(());
        }
        self.grads = None;
        self.scratch = None;
        self.train_labels = None;
        self.weights_t = None;
        self.acts = None;
        if packed {
            let (steps, total) = self.pack_plan();
            let ranges = self.ranges.map(&|x| self.packed_offset(x));
            // In place when every weight packs into no more than its own o·i values
            // (peak: the plain buffer and one weight's scratch), else beside it.
            if !self.backend.pack_in_place(&mut self.params, &steps, total)? {
                let mut buf = self.backend.zeros(total)?;
                let (be, params) = (&self.backend, &self.params);
                be.scope(|| {
                    for step in &steps {
                        match step {
                            PackStep::Copy { from, to } => be.copy(be.src(params, from.clone()), be.dst(&mut buf, *to..to + from.len())),
                            PackStep::Pack { from, to, i, o } => {
                                let len = be.packed_weight_len(*i, *o).expect("packed");
                                be.pack_weight(be.src(params, from.clone()), be.dst(&mut buf, *to..to + len), *i, *o);
                            }
                        }
                    }
                });
                self.params = buf;
            }
            self.inference = Some(InferenceLayout::Packed { ranges, plan: steps });
            return Ok(());
        }
        let largest = self.ranges.linears(&self.cfg).iter().map(|(_, i, o)| i * o).max().unwrap_or(1);
        let mut scratch = self.backend.zeros(largest)?;
        self.transpose_linears(&mut scratch, false);
        self.inference = Some(InferenceLayout::Transposed(scratch));
        Ok(())
    }

    /// Turns a model in the inference layout back to the plain one (a no-op otherwise).
    /// From the packed layout this allocates the plain buffer (the error when it cannot
    /// leaves the model as it was) and the weights are the packed, rounded ones.
    pub fn use_plain_layout(&mut self) -> Result<()> {
        match self.inference.take() {
            None => {}
            Some(InferenceLayout::Transposed(mut scratch)) => {
                self.transpose_linears(&mut scratch, true);
                self.acts = None;
            }
            Some(InferenceLayout::Packed { ranges, plan }) => {
                let mut plain = match self.backend.zeros(self.layout.total()) {
                    Ok(b) => b,
                    Err(e) => {
                        self.inference = Some(InferenceLayout::Packed { ranges, plan });
                        return Err(e);
                    }
                };
                let (be, packed) = (&self.backend, &self.params);
                be.scope(|| {
                    for step in &plan {
                        match step {
                            PackStep::Copy { from, to } => be.copy(be.src(packed, *to..to + from.len()), be.dst(&mut plain, from.clone())),
                            PackStep::Pack { from, to, i, o } => {
                                let len = be.packed_weight_len(*i, *o).expect("packed");
                                be.unpack_weight(be.src(packed, *to..to + len), be.dst(&mut plain, from.clone()), *i, *o);
                            }
                        }
                    }
                });
                self.params = plain;
                self.acts = None;
            }
        }
        Ok(())
    }

    /// How the plain layout maps onto the packed one: in order, each run of parameters
    /// between two Linear weights (copied) and each Linear weight (packed), with its
    /// offset in the packed layout; and the packed layout's length.
    fn pack_plan(&self) -> (Vec<PackStep>, usize) {
        let mut weights: Vec<(usize, usize, usize)> = self.ranges.linears(&self.cfg).into_iter().map(|(rg, i, o)| (rg.start, i, o)).collect();
        weights.sort_unstable();
        let (mut steps, mut at, mut to) = (Vec::new(), 0, 0);
        for (start, i, o) in weights {
            if start > at {
                steps.push(PackStep::Copy { from: at..start, to });
                to += start - at;
            }
            steps.push(PackStep::Pack {
                from: start..start + o * i,
                to,
                i,
                o,
            });
            to += self.backend.packed_weight_len(i, o).expect("packed");
            at = start + o * i;
        }
        let total = self.layout.total();
        if at < total {
            steps.push(PackStep::Copy { from: at..total, to });
            to += total - at;
        }
        (steps, to)
    }

    /// Offset in the packed layout of the plain layout's offset `x` (a parameter
    /// boundary): every Linear weight that ends at or before `x` takes its packed length
    /// instead of o·i.
    fn packed_offset(&self, x: usize) -> usize {
        let mut off = x as isize;
        for (rg, i, o) in self.ranges.linears(&self.cfg) {
            if rg.start + o * i <= x {
                let packed = self.backend.packed_weight_len(i, o).expect("packed");
                off += packed as isize - (o * i) as isize;
            }
        }
        off as usize
    }

    /// Turns every Linear weight of `params` into the backend's transposed form in place
    /// through `scratch` ([`Backend::transpose_weight`]), or back.
    fn transpose_linears(&mut self, scratch: &mut B::Buf, back: bool) {
        let (be, params) = (&self.backend, &mut self.params);
        for (rg, i, o) in self.ranges.linears(&self.cfg) {
            let w = rg.start..rg.start + o * i;
            be.scope(|| {
                if back {
                    be.untranspose_weight(be.src(params, w.clone()), be.dst(scratch, 0..o * i), i, o);
                } else {
                    be.transpose_weight(be.src(params, w.clone()), be.dst(scratch, 0..o * i), i, o);
                }
                be.copy(be.src(scratch, 0..o * i), be.dst(params, w));
            });
        }
    }

    /// Bytes of parameter-sized state this model holds now: the parameters (packed ones
    /// included: two bf16 per value), the transposed-weight cache, gradients and the
    /// inference-layout scratch (activation workspaces excluded), at 4 bytes per value.
    pub fn weight_bytes(&self) -> usize {
        let len = |b: &B::Buf| self.backend.len(b);
        let scratch = match &self.inference {
            Some(InferenceLayout::Transposed(s)) => len(s),
            _ => 0,
        };
        4 * (len(&self.params) + self.weights_t.as_ref().map_or(0, len) + self.grads.as_ref().map_or(0, len) + scratch)
    }
    /// Bytes of the activation workspaces the model holds now: the forward pass's (one
    /// per batch size, kept and reused across calls of that size) and the backward
    /// pass's scratch. Per-op temporaries of the backend (attention rows, GEMM packing)
    /// are not held and not counted.
    pub fn workspace_bytes(&self) -> usize {
        self.acts.as_ref().map_or(0, |a| a.bytes(&self.backend)) + self.scratch.as_ref().map_or(0, |s| s.bytes(&self.backend))
    }
    /// Everything the model holds: [`Model::weight_bytes`] + [`Model::workspace_bytes`].
    pub fn held_bytes(&self) -> usize {
        self.weight_bytes() + self.workspace_bytes()
    }
    /// Flat gradient buffer (allocated, zeroed, on first use).
    pub fn grads(&mut self) -> Result<&B::Buf> {
        self.ensure_grads()?;
        Ok(self.grads.as_ref().expect("grads"))
    }
    /// Parameters (read-only) and gradients (writable) at once, for optimizer updates.
    pub fn params_and_grads_mut(&mut self) -> Result<(&mut B::Buf, &mut B::Buf)> {
        self.use_plain_layout()?;
        self.ensure_grads()?;
        self.train_labels = None;
        self.weights_t = None;
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
    /// Copies the parameters to the host (from the packed layout: the rounded weights
    /// its products use).
    pub fn read_params(&self) -> Result<Vec<f32>> {
        if let Some(InferenceLayout::Packed { plan, .. }) = &self.inference {
            let be = &self.backend;
            let mut p = vec![0f32; self.layout.total()];
            for step in plan {
                match step {
                    PackStep::Copy { from, to } => p[from.clone()].copy_from_slice(&be.read(&self.params, *to..to + from.len())?),
                    PackStep::Pack { from, to, i, o } => {
                        let len = be.packed_weight_len(*i, *o).expect("packed");
                        let mut plain = be.zeros(o * i)?;
                        be.scope(|| be.unpack_weight(be.src(&self.params, *to..to + len), be.dst(&mut plain, 0..o * i), *i, *o));
                        p[from.clone()].copy_from_slice(&be.read(&plain, 0..o * i)?);
                    }
                }
            }
            return Ok(p);
        }
        let mut p = self.backend.read(&self.params, 0..self.layout.total())?;
        if self.inference.is_some() {
            // Each Linear weight back to the plain layout through a buffer of the largest.
            let be = &self.backend;
            let largest = self.ranges.linears(&self.cfg).iter().map(|(_, i, o)| i * o).max().unwrap_or(1);
            let mut plain = be.zeros(largest)?;
            for (rg, i, o) in self.ranges.linears(&self.cfg) {
                let w = rg.start..rg.start + o * i;
                be.scope(|| be.untranspose_weight(be.src(&self.params, w.clone()), be.dst(&mut plain, 0..o * i), i, o));
                p[w].copy_from_slice(&be.read(&plain, 0..o * i)?);
            }
        }
        Ok(p)
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
        self.weights_t = None;
        if let Some(InferenceLayout::Packed { .. }) = &self.inference {
            // Through the plain layout, then packed again.
            self.use_plain_layout()?;
            self.backend.write(&mut self.params, 0, p)?;
            return self.enter_inference_layout();
        }
        self.backend.write(&mut self.params, 0, p)?;
        if let Some(InferenceLayout::Transposed(mut scratch)) = self.inference.take() {
            self.transpose_linears(&mut scratch, false);
            self.inference = Some(InferenceLayout::Transposed(scratch));
        }
        Ok(())
    }

    fn ensure_grads(&mut self) -> Result<()> {
        self.use_plain_layout()?;
        if self.grads.is_none() {
            self.grads = Some(self.backend.zeros(self.layout.total())?);
        }
        Ok(())
    }

    /// Validates t and labels, (re)allocates the workspace for the batch and uploads
    /// the timestep features. Returns the batch size.
    fn prepare(&mut self, t: &[f32], labels: &[usize], train: bool) -> Result<usize> {
        let b = t.len();
        if b == 0 {
            return Err(Error::invalid("batch is empty (t has length 0)"));
        }
        check_len("labels", labels.len(), b)?;
        check_finite("t", t)?;
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > self.cfg.num_classes) {
            return Err(Error::invalid(format!(
                "labels[{i}] = {l} out of range 0..={} ({} = null class)",
                self.cfg.num_classes, self.cfg.num_classes
            )));
        }
        self.train_labels = None;
        if train {
            self.use_plain_layout()?;
        }
        let fits = matches!(&self.acts, Some(a) if a.batch == b && a.train == train);
        if !fits {
            self.acts = None; // free first: peak memory is one workspace
            self.acts = Some(Acts::new(&self.backend, &self.cfg, b, train)?);
        }
        let acts = self.acts.as_mut().expect("acts");
        self.backend
            .write(&mut acts.tfeat, 0, &embed::timestep_features(t, self.cfg.arch.time_max_period()))?;
        Ok(b)
    }

    /// Runs the network on the staged input (`acts.img`) and returns the output buffer.
    fn run(&mut self, external: Option<&B::Buf>, labels: &[usize], train: bool) {
        let (be, cfg, ranges, fixed) = (&self.backend, &self.cfg, &self.ranges, &self.fixed);
        // Inference with the model's own weights uses the transposed-weight cache when
        // the backend prefers it (built once, dropped on any parameter write).
        let inference = self.inference.is_some() && external.is_none();
        let use_t = !inference && self.weight_cache && !train && external.is_none() && be.prefers_transposed_weights();
        if use_t && self.weights_t.is_none() {
            if let Ok(mut wt) = be.zeros(self.layout.total()) {
                let params = &self.params;
                be.scope(|| network::transpose_weights(be, cfg, ranges, params, &mut wt));
                self.weights_t = Some(wt);
            }
        }
        // In the inference layout `params` is both: non-Linear parameters at their plain
        // offsets, Linear weights transposed; or, packed, everything at the packed
        // layout's ranges.
        let (wt, ranges) = match (&self.inference, inference) {
            (Some(InferenceLayout::Packed { ranges: packed, .. }), true) => (LinearWeights::Packed, packed),
            (Some(InferenceLayout::Transposed(_)), true) => (LinearWeights::Transposed(&self.params), ranges),
            _ => match self.weights_t.as_ref().filter(|_| use_t) {
                Some(w) => (LinearWeights::Transposed(w), ranges),
                None => (LinearWeights::Plain, ranges),
            },
        };
        let params = external.unwrap_or(&self.params);
        let acts = self.acts.as_mut().expect("staged");
        be.scope(|| network::forward(be, cfg, ranges, params, wt, fixed, acts, labels));
        if train {
            self.train_labels = Some(labels.to_vec());
        }
    }

    fn host_forward(&mut self, external: Option<&B::Buf>, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32], train: bool) -> Result<()> {
        let b = self.prepare(t, labels, train)?;
        check_len("x", x.len(), b * self.cfg.image_len())?;
        check_len("out", out.len(), b * self.cfg.image_len())?;
        check_finite("x", x)?;
        let acts = self.acts.as_mut().expect("acts");
        self.backend.write(&mut acts.img, 0, x)?;
        self.run(external, labels, train);
        let v = self.backend.read(&self.acts.as_ref().expect("acts").out, 0..out.len())?;
        out.copy_from_slice(&v);
        Ok(())
    }

    /// Inference: out = F(x, t, labels). x, out: `[B, C, H, W]`; t: `[B]`; labels: `[B]` in 0..=K.
    pub fn forward(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.host_forward(None, x, t, labels, out, false)
    }

    /// Inference with another parameter buffer of the same layout (an EMA or teacher copy).
    pub fn forward_with(&mut self, params: &B::Buf, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        check_len("parameter buffer", self.backend.len(params), self.layout.total())?;
        self.host_forward(Some(params), x, t, labels, out, false)
    }

    /// Training forward: like [`Model::forward`] but keeps every activation for
    /// [`Model::backward`].
    pub fn forward_train(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.host_forward(None, x, t, labels, out, true)
    }

    /// Forward on a device-resident input x [B, C, H, W]; returns the device output
    /// [B, C, H, W]. `train` keeps the activations for [`Model::backward_device`].
    pub fn forward_device(&mut self, x: &B::Buf, t: &[f32], labels: &[usize], train: bool) -> Result<&B::Buf> {
        let b = self.prepare(t, labels, train)?;
        let n = b * self.cfg.image_len();
        check_len("x", self.backend.len(x), n)?;
        let acts = self.acts.as_mut().expect("acts");
        self.backend.copy(self.backend.src(x, 0..n), self.backend.dst(&mut acts.img, 0..n));
        self.run(None, labels, train);
        Ok(&self.acts.as_ref().expect("acts").out)
    }

    /// Backward of the last training forward for a device-resident dout = ∂L/∂F
    /// [B, C, H, W]: parameter gradients +=; with `want_dx`, returns ∂L/∂x [B, C, H, W].
    pub fn backward_device(&mut self, dout: &B::Buf, want_dx: bool) -> Result<Option<&B::Buf>> {
        let labels = self
            .train_labels
            .clone()
            .ok_or_else(|| Error::invalid("backward needs a training forward first (parameters or inputs changed since)"))?;
        let n = labels.len() * self.cfg.image_len();
        check_len("dout", self.backend.len(dout), n)?;
        self.ensure_scratch(labels.len())?;
        let g = self.scratch.as_mut().expect("scratch");
        self.backend.copy(self.backend.src(dout, 0..n), self.backend.dst(&mut g.dout, 0..n));
        self.run_backward(&labels, want_dx);
        Ok(if want_dx { Some(&self.scratch.as_ref().expect("scratch").dimg) } else { None })
    }

    fn ensure_scratch(&mut self, b: usize) -> Result<()> {
        self.ensure_grads()?;
        if !matches!(&self.scratch, Some(s) if s.batch == b) {
            self.scratch = None;
            self.scratch = Some(GradScratch::new(&self.backend, &self.cfg, b)?);
        }
        Ok(())
    }

    fn run_backward(&mut self, labels: &[usize], want_dx: bool) {
        let g = self.scratch.as_mut().expect("scratch");
        let acts = self.acts.as_ref().expect("acts");
        let grads = self.grads.as_mut().expect("grads");
        let (be, cfg, ranges, fixed, params) = (&self.backend, &self.cfg, &self.ranges, &self.fixed, &self.params);
        be.scope(|| network::backward(be, cfg, ranges, params, fixed, acts, labels, grads, g, want_dx));
    }

    /// Backward of the last [`Model::forward_train`]: parameter gradients += ∂L/∂θ for
    /// dout = ∂L/∂F [B, C, H, W]; if `dx` is given it receives ∂L/∂x [B, C, H, W].
    pub fn backward(&mut self, dout: &[f32], dx: Option<&mut [f32]>) -> Result<()> {
        let labels = self
            .train_labels
            .clone()
            .ok_or_else(|| Error::invalid("backward needs a forward_train first (parameters or inputs changed since)"))?;
        let n = labels.len() * self.cfg.image_len();
        check_len("dout", dout.len(), n)?;
        if let Some(dx) = dx.as_ref() {
            check_len("dx", dx.len(), n)?;
        }
        check_finite("dout", dout)?;
        self.ensure_scratch(labels.len())?;
        let g = self.scratch.as_mut().expect("scratch");
        self.backend.write(&mut g.dout, 0, dout)?;
        self.run_backward(&labels, dx.is_some());
        if let Some(dx) = dx {
            let v = self.backend.read(&self.scratch.as_ref().expect("scratch").dimg, 0..n)?;
            dx.copy_from_slice(&v);
        }
        Ok(())
    }

    /// Enables (default) or disables the inference copy of the weights with every Linear
    /// transposed. On the CPU it makes inference GEMMs markedly faster (SiT-S/2 batch 1:
    /// 90 → 73 ms) at the cost of a second parameter-sized buffer; results differ from the
    /// plain layout only by float rounding.
    pub fn set_weight_cache(&mut self, enabled: bool) {
        self.weight_cache = enabled;
        if !enabled {
            self.weights_t = None;
            // From the packed layout this needs a plain buffer; when it cannot be had the
            // model stays packed (still correct, still bf16).
            let _ = self.use_plain_layout();
        }
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
