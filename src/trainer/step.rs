//! [`Trainer`]: one UCGM-T training step (spec §2.2) followed by the parameter update and
//! the sampling EMA (§2.9), over a [`Model`] on any backend.
//!
//! Order of one step (all in internal time, see [`Coefficients::is_flipped`]):
//! 1. t ~ Beta(a, b)·s, then z ~ N(0, I) — both from the trainer's one seeded [`Rng`], in
//!    that order ([`Trainer::train_step`]; [`Trainer::train_step_with`] takes them);
//! 2. the last round(ratio·B) labels become the null class K (ỹ);
//! 3. x_t = α(t)·z + γ(t)·x; the online forward with gradient F_θ = F(x_t, t, ỹ);
//! 4. base target F_tgt = α̂·z + γ̂·x;
//! 5. if λ ≠ 0 or ζ ≠ 0: `mod` is created (first time) and, for the EMA kind, moved
//!    toward the online weights;
//! 6. if ζ ≠ 0: x̃, z̃ enhanced and F_tgt = α̂·z̃ + γ̂·x̃ (§2.5);
//! 7. if λ ≠ 0: F_tgt replaced by the consistency target, probing the online weights
//!    under no-grad (§2.6);
//! 8. loss and dL/dF_θ (§2.7, §2.8), backward into the parameter gradients;
//! 9. optional clipping, NaN/Inf gradients → 0, AdamW or RAdam, then the sampling EMA
//!    ema ← d·ema + (1 − d)·online with d = `train.ema_decay`.

use super::batch_part::BatchPart;
use super::coefficients::Coefficients;
use super::config::TrainerConfig;
use super::consistency::{backward_difference, central_difference, consistency_target, Difference, Probe};
use super::enhance::{enhance_endpoint, Reference};
use super::interpolant::{data_estimate, interpolate, noise_estimate, regression_target};
use super::loss::{partial_loss_and_grad, LossShape};
use super::optimizer::Optimizer;
use super::teacher::{Teacher, TeacherKind};
use super::time_dist::TimeDistribution;
use crate::backend::Backend;
use crate::error::{check_finite, check_len, Error, Result};
use crate::model::Model;
use crate::rng::Rng;

/// The transport as the trainer holds it.
pub type BoxedTransport = Box<dyn Coefficients + Send + Sync>;

/// What one step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Steps completed, this one included.
    pub step: u64,
    /// The batch loss L.
    pub loss: f64,
    /// Global L2 norm of the parameter gradient before clipping.
    pub grad_norm: f64,
    /// Number of labels turned into the null class.
    pub n_drop: usize,
}

/// The tensors of a step up to the backward pass (for inspection and tests).
#[derive(Clone, Debug)]
pub struct StepTensors {
    /// The online output F_θ in internal time, `[B, C, H, W]`.
    pub output: Vec<f32>,
    /// The target F_tgt, `[B, C, H, W]`.
    pub target: Vec<f32>,
    /// ∂L/∂F_θ, `[B, C, H, W]`.
    pub dloss: Vec<f32>,
    /// The labels after dropping ỹ, `[B]`.
    pub labels: Vec<usize>,
    /// The batch loss L.
    pub loss: f64,
    /// Number of dropped labels.
    pub n_drop: usize,
}

/// UCGM-T: the online network, its sampling EMA, the auxiliary network `mod`, the
/// optimizer and the random stream of a run.
pub struct Trainer<B: Backend + Clone> {
    pub(super) config: TrainerConfig,
    pub(super) transport: BoxedTransport,
    pub(super) model: Model<B>,
    /// The sampling EMA copy `ema`, `[N]`.
    pub(super) ema: B::Buf,
    pub(super) teacher: Teacher<B>,
    pub(super) optimizer: Optimizer<B>,
    pub(super) rng: Rng,
    /// Completed steps.
    pub(super) step: u64,
}

impl<B: Backend + Clone> Trainer<B> {
    /// A trainer starting from `model`'s weights (the sampling EMA starts as an exact
    /// copy), with the transport named by `transport.type` and every random draw seeded by
    /// `train.global_seed`.
    pub fn new(config: TrainerConfig, model: Model<B>) -> Result<Self> {
        config.validate()?;
        let transport = Box::new(config.transport.transport()?);
        Self::with_transport(config, model, transport)
    }

    /// Like [`Trainer::new`] with another set of coefficients than `transport.type` names
    /// (e.g. [`crate::transport::TransportKind`] for native, unflipped time). A checkpoint
    /// records only `transport.type`: [`Trainer::resume`] rebuilds that transport.
    pub fn with_transport(config: TrainerConfig, mut model: Model<B>, transport: BoxedTransport) -> Result<Self> {
        config.validate()?;
        model.use_plain_layout()?;
        let be = model.backend().clone();
        let n = model.layout().total();
        let mut ema = be.zeros(n)?;
        be.copy(be.src(model.params(), 0..n), be.dst(&mut ema, 0..n));
        let optimizer = Optimizer::new(&config.optimizer, &be, n)?;
        let teacher = Teacher::new(TeacherKind::for_rate(config.transport.ema_decay_rate)?);
        let rng = Rng::new(config.train.global_seed);
        Ok(Trainer {
            config,
            transport,
            model,
            ema,
            teacher,
            optimizer,
            rng,
            step: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }
    /// The online network.
    pub fn model(&self) -> &Model<B> {
        &self.model
    }
    /// The online network, writable (e.g. to read its gradients after [`Trainer::forward_backward`]).
    pub fn model_mut(&mut self) -> &mut Model<B> {
        &mut self.model
    }
    /// The sampling EMA parameters, `[N]` in the model's layout.
    pub fn ema_params(&self) -> &B::Buf {
        &self.ema
    }
    /// The sampling EMA parameters copied to the host.
    pub fn read_ema(&self) -> Result<Vec<f32>> {
        self.model.backend().read(&self.ema, 0..self.model.layout().total())
    }
    /// The `mod` weights on the host when `mod` is a separate copy that exists.
    pub fn read_teacher(&self) -> Result<Option<Vec<f32>>> {
        self.teacher.read_params()
    }
    /// Completed steps.
    pub fn step(&self) -> u64 {
        self.step
    }
    /// The random stream's position.
    pub fn rng_state(&self) -> crate::rng::RngState {
        self.rng.state()
    }

    /// One training step on a batch: draws t and z from the trainer's stream, then
    /// [`Trainer::train_step_with`]. x: `[B, C, H, W]`; labels: `[B]` in 0..K.
    pub fn train_step(&mut self, x: &[f32], labels: &[usize]) -> Result<StepStats> {
        let batch = labels.len();
        let time_dist = TimeDistribution::new(self.config.transport.time_dist_ctrl)?;
        let t = time_dist.sample(&mut self.rng, batch)?;
        let z = self.rng.normal_f32(batch * self.model.config().image_len());
        self.train_step_with(x, labels, &t, &z)
    }

    /// One training step with the caller's times and noise.
    /// x, z: `[B, C, H, W]`; labels: `[B]` in 0..K (before dropping); t: `[B]` internal times.
    pub fn train_step_with(&mut self, x: &[f32], labels: &[usize], t: &[f32], z: &[f32]) -> Result<StepStats> {
        let tensors = self.forward_backward(x, labels, t, z)?;
        let grad_norm = self.apply_update()?;
        Ok(StepStats {
            step: self.step,
            loss: tensors.loss,
            grad_norm,
            n_drop: tensors.n_drop,
        })
    }

    /// Steps 1–8 of a training step with the caller's t and z: targets, loss, and the
    /// parameter gradients (left in the model's gradient buffer, not yet applied).
    /// Advances `mod`. x, z: `[B, C, H, W]`; labels, t: `[B]`.
    pub fn forward_backward(&mut self, x: &[f32], labels: &[usize], t: &[f32], z: &[f32]) -> Result<StepTensors> {
        let tensors = self.forward_part(x, labels, t, z, BatchPart::whole(t.len()))?;
        self.backward_from(&tensors.dloss, tensors.dloss.iter().all(|v| v.is_finite()))?;
        Ok(tensors)
    }

    /// Zeroes the parameter gradients and, when `finite`, backpropagates ∂L/∂F (internal
    /// time) into them. dloss: `[B, C, H, W]`.
    pub(super) fn backward_from(&mut self, dloss: &[f32], finite: bool) -> Result<()> {
        self.model.zero_grads()?;
        if finite {
            // dL/dF_net = −dL/dF_int under the flip.
            let mut dnet = dloss.to_vec();
            self.to_internal(&mut dnet);
            self.model.backward(&dnet, None)?;
        }
        // Otherwise (e.g. t = 0 with λ ≠ 0, where the consistency weight is infinite) the
        // reference's gradients are all NaN and its guard sets them to 0; the gradient
        // stays 0 here.
        Ok(())
    }

    /// Steps 1–8 up to ∂L/∂F for `part` of a global batch: the samples of `part` only
    /// (x, z: `[b, C, H, W]`; labels, t: `[b]`), with label dropping and the loss mean
    /// taken over the global batch (see [`BatchPart`]). The returned loss is this part's
    /// share of L; `n_drop` counts the part's dropped labels. Advances `mod`.
    pub(super) fn forward_part(&mut self, x: &[f32], labels: &[usize], t: &[f32], z: &[f32], part: BatchPart) -> Result<StepTensors> {
        let cfg = self.model.config().clone();
        let (batch, n) = (t.len(), t.len() * cfg.image_len());
        if batch == 0 {
            return Err(Error::invalid("training batch is empty"));
        }
        check_len("batch part", part.len, batch)?;
        check_len("labels", labels.len(), batch)?;
        check_len("x", x.len(), n)?;
        check_len("z", z.len(), n)?;
        check_finite("t", t)?;
        check_finite("x", x)?;
        check_finite("z", z)?;
        let ts = &self.config.transport;
        let null = cfg.num_classes;
        let mut y = labels.to_vec();
        let n_drop = part.local_drops(ts.lab_drop_ratio);
        y[batch - n_drop..].fill(null);

        let coefs = self.transport.at_all(t);
        let t_net = self.transport.network_times(t);
        let mut x_t = vec![0f32; n];
        interpolate(&coefs, z, x, &mut x_t);
        let mut output = vec![0f32; n];
        self.model.forward_train(&x_t, &t_net, &y, &mut output)?;
        self.to_internal(&mut output);

        let mut target = vec![0f32; n];
        regression_target(&coefs, z, x, &mut target);
        let zeta = ts.effective_enhanced_ratio();
        let difference = ts.difference();
        if difference.is_some() || zeta != 0.0 {
            self.teacher.advance(&self.model)?;
        }
        let (mut x_tilde, mut z_tilde) = (x.to_vec(), z.to_vec());
        if let Some(style) = self.config.transport.enhancement() {
            // Predictor p_c and, unless it is the target itself, reference p_u.
            let (pc_x, pc_z) = if style.predictor_is_online() {
                self.endpoints(&coefs, &output, &x_t)
            } else {
                let f = self.eval_mod(&x_t, &t_net, &y)?;
                self.endpoints(&coefs, &f, &x_t)
            };
            let pu = if style.reference_is_unconditional() {
                let f = self.eval_mod(&x_t, &t_net, &vec![null; batch])?;
                Some(self.endpoints(&coefs, &f, &x_t))
            } else {
                None
            };
            let (window, refs) = (self.config.transport.window(), pu.as_ref());
            let ref_x = refs.map_or(Reference::Target, |(px, _)| Reference::Prediction(px));
            let ref_z = refs.map_or(Reference::Target, |(_, pz)| Reference::Prediction(pz));
            enhance_endpoint(&mut x_tilde, &pc_x, ref_x, t, window, zeta, n_drop);
            enhance_endpoint(&mut z_tilde, &pc_z, ref_z, t, window, zeta, n_drop);
            regression_target(&coefs, &z_tilde, &x_tilde, &mut target);
        }
        if let Some(difference) = difference {
            let mut derivative = vec![0f64; n];
            let probe_times = difference.probe_times(t);
            // (coefficients, x_r, F(x_r)) at every probe time, online weights, no grad.
            let mut probes = Vec::with_capacity(probe_times.len());
            for r in &probe_times {
                let coefs_r = self.transport.at_all(r);
                let mut x_r = vec![0f32; n];
                interpolate(&coefs_r, &z_tilde, &x_tilde, &mut x_r);
                let r_net = self.transport.network_times(r);
                let f_r = self.eval_online(&x_r, &r_net, &y)?;
                probes.push((coefs_r, x_r, f_r));
            }
            let probe = |i: usize| Probe {
                coefs: &probes[i].0,
                x_r: &probes[i].1,
                f: &probes[i].2,
            };
            match difference {
                Difference::Central => central_difference(probe(0), probe(1), &mut derivative),
                Difference::Backward { lambda } => {
                    let mut x_tilde_t = vec![0f32; n];
                    interpolate(&coefs, &z_tilde, &x_tilde, &mut x_tilde_t);
                    let current = Probe {
                        coefs: &coefs,
                        x_r: &x_tilde_t,
                        f: &output,
                    };
                    backward_difference(current, probe(0), lambda, t, &mut derivative);
                }
            }
            consistency_target(&output, &derivative, &coefs, t, &mut target);
        }

        let shape = LossShape {
            batch,
            channels: cfg.in_channels,
            pixels: cfg.input_size * cfg.input_size,
        };
        let mut dloss = vec![0f32; n];
        let loss = partial_loss_and_grad(&output, &target, t, shape, &self.config.transport.loss_spec(), part.global, &mut dloss);
        Ok(StepTensors {
            output,
            target,
            dloss,
            labels: y,
            loss,
            n_drop,
        })
    }

    /// Step 9: clipping, the NaN/Inf guard, the optimizer update and the sampling EMA.
    /// Returns the gradient norm before clipping.
    pub fn apply_update(&mut self) -> Result<f64> {
        let be = self.model.backend().clone();
        let (params, grads) = self.model.params_and_grads_mut()?;
        let grad_norm = self.optimizer.update(&be, params, grads)?;
        let n = self.model.layout().total();
        be.ema(be.src(self.model.params(), 0..n), be.dst(&mut self.ema, 0..n), self.config.train.ema_decay);
        self.step += 1;
        Ok(grad_norm)
    }

    /// Negates a network output (or its gradient) under the v2 flip. values: `[B, C, H, W]`.
    fn to_internal(&self, values: &mut [f32]) {
        if self.transport.is_flipped() {
            values.iter_mut().for_each(|v| *v = -*v);
        }
    }

    /// `mod`'s output in internal time. x: `[B, C, H, W]`; t_net, labels: `[B]`.
    fn eval_mod(&mut self, x: &[f32], t_net: &[f32], labels: &[usize]) -> Result<Vec<f32>> {
        let mut f = vec![0f32; x.len()];
        self.teacher.eval_mod(&self.model, x, t_net, labels, &mut f)?;
        self.to_internal(&mut f);
        Ok(f)
    }

    /// The online output under no-grad, in internal time. x: `[B, C, H, W]`; t_net, labels: `[B]`.
    fn eval_online(&mut self, x: &[f32], t_net: &[f32], labels: &[usize]) -> Result<Vec<f32>> {
        let mut f = vec![0f32; x.len()];
        self.teacher.eval_online(&self.model, x, t_net, labels, &mut f)?;
        self.to_internal(&mut f);
        Ok(f)
    }

    /// (x̂, ẑ) recovered from an output F at x_t. f, x_t: `[B, C, H, W]`.
    fn endpoints(&self, coefs: &[super::Coef], f: &[f32], x_t: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut x_hat, mut z_hat) = (vec![0f32; f.len()], vec![0f32; f.len()]);
        data_estimate(coefs, f, x_t, &mut x_hat);
        noise_estimate(coefs, f, x_t, &mut z_hat);
        (x_hat, z_hat)
    }
}
