//! The trainer handle (`ucgm_trainer`): UCGM-T over a copy of a model, with every
//! UCGM-T and optimizer setting, training steps on caller-provided batches (with the
//! trainer's own or the caller's t and z), checkpoints, and the online / EMA / `mod`
//! weights handed back as files or model handles. A trainer runs on the backend of the
//! model it was made from (its own pool or CUDA stream), or on the one its
//! `ucgm_model_params` choose when it starts from a checkpoint.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::ptr;
use std::time::Instant;

use super::model::{self, backend_fields, fixed_text, ucgm_model, ucgm_model_params, ModelState, UCGM_BACKEND_DESCRIPTION_LEN};
use super::params::{self, Versioned};
use super::sample::{ucgm_transport, TRANSPORTS, UCGM_TRANSPORT_LINEAR};
use super::{
    call, ucgm_backend, ucgm_log_callback, ucgm_progress_callback, ucgm_status, with_handle, with_handle_cancellable, AsHandle, Handle, HasHooks, Hooks,
    UCGM_LOG_DEBUG, UCGM_LOG_INFO,
};
use crate::engine::{AnyModel, AnyTrainer};
use crate::error::{Error, Result};
use crate::model::weights;
use crate::trainer::{EnhancedStyle, OptimizerKind, OptimizerSection, StepStats, TimeWeight, TrainSection, TrainerConfig, TransportSection};

/// `ucgm_train_params.enhanced_style` (`int32_t`): which predictions the enhanced target
/// contrasts; required (not NONE) when `enhanced_ratio` ≠ 0.
pub type ucgm_enhanced_style = i32;
/// No enhanced target.
pub const UCGM_ENHANCED_NONE: ucgm_enhanced_style = 0;
/// "ft-vs-fe": online conditional vs `mod` unconditional (multi-step training).
pub const UCGM_ENHANCED_FT_VS_FE: ucgm_enhanced_style = 1;
/// "fc-vs-xz": `mod` conditional vs the targets (few-step training).
pub const UCGM_ENHANCED_FC_VS_XZ: ucgm_enhanced_style = 2;
/// "fc-vs-fe": `mod` conditional vs `mod` unconditional (tuning pre-trained models).
pub const UCGM_ENHANCED_FC_VS_FE: ucgm_enhanced_style = 3;

/// `ucgm_train_params.weight_function` (`int32_t`): per-sample time weight of the loss.
pub type ucgm_time_weight = i32;
/// No weight.
pub const UCGM_TIME_WEIGHT_NONE: ucgm_time_weight = 0;
/// cos(1.57·t).
pub const UCGM_TIME_WEIGHT_COSINE: ucgm_time_weight = 1;

/// `ucgm_train_params.optimizer` (`int32_t`).
pub type ucgm_optimizer = i32;
/// The reference's AdamW.
pub const UCGM_OPTIMIZER_ADAMW: ucgm_optimizer = 0;
/// torch.optim.RAdam.
pub const UCGM_OPTIMIZER_RADAM: ucgm_optimizer = 1;

/// Which weights of a trainer (`int32_t`).
pub type ucgm_weights = i32;
/// The network being trained.
pub const UCGM_WEIGHTS_ONLINE: ucgm_weights = 0;
/// The sampling EMA (what the reference samples with).
pub const UCGM_WEIGHTS_EMA: ucgm_weights = 1;
/// The auxiliary network `mod` (exists once a step needed it, when `ema_decay_rate` > 0).
pub const UCGM_WEIGHTS_MOD: ucgm_weights = 2;

const STYLES: [(i32, &str, Option<EnhancedStyle>); 4] = [
    (UCGM_ENHANCED_NONE, "UCGM_ENHANCED_NONE", None),
    (UCGM_ENHANCED_FT_VS_FE, "UCGM_ENHANCED_FT_VS_FE", Some(EnhancedStyle::FtVsFe)),
    (UCGM_ENHANCED_FC_VS_XZ, "UCGM_ENHANCED_FC_VS_XZ", Some(EnhancedStyle::FcVsXz)),
    (UCGM_ENHANCED_FC_VS_FE, "UCGM_ENHANCED_FC_VS_FE", Some(EnhancedStyle::FcVsFe)),
];
const WEIGHTINGS: [(i32, &str, Option<TimeWeight>); 2] = [
    (UCGM_TIME_WEIGHT_NONE, "UCGM_TIME_WEIGHT_NONE", None),
    (UCGM_TIME_WEIGHT_COSINE, "UCGM_TIME_WEIGHT_COSINE", Some(TimeWeight::Cosine)),
];
const OPTIMIZERS: [(i32, &str, OptimizerKind); 2] = [
    (UCGM_OPTIMIZER_ADAMW, "UCGM_OPTIMIZER_ADAMW", OptimizerKind::AdamW),
    (UCGM_OPTIMIZER_RADAM, "UCGM_OPTIMIZER_RADAM", OptimizerKind::RAdam),
];
const WEIGHTS: [(i32, &str, ucgm_weights); 3] = [
    (UCGM_WEIGHTS_ONLINE, "UCGM_WEIGHTS_ONLINE", UCGM_WEIGHTS_ONLINE),
    (UCGM_WEIGHTS_EMA, "UCGM_WEIGHTS_EMA", UCGM_WEIGHTS_EMA),
    (UCGM_WEIGHTS_MOD, "UCGM_WEIGHTS_MOD", UCGM_WEIGHTS_MOD),
];

/// Every UCGM-T and optimizer setting (the reference's `transport:` and `optimizer:`
/// keys, spec §2.1 / §2.9). Fill with `ucgm_train_params_default`: the reference's
/// UCGM-T defaults (plain flow matching with 10 % label dropping), AdamW with lr 1e-4,
/// β = (0.9, 0.999), no weight decay, no clipping, sampling EMA 0.9999, seed 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_train_params {
    /// `sizeof(ucgm_train_params)`, set by `ucgm_train_params_default`.
    pub struct_size: usize,
    /// `transport.type`: a `UCGM_TRANSPORT_*` value (default Linear).
    pub transport: ucgm_transport,
    /// `enhanced_style`: a `UCGM_ENHANCED_*` value (default NONE).
    pub enhanced_style: ucgm_enhanced_style,
    /// `lab_drop_ratio` ∈ [0, 1]: the last round(ratio·B) labels of a batch become null (0.1).
    pub lab_drop_ratio: f64,
    /// `consistc_ratio` λ ∈ [0, 1]: 0 = multi-step training, 1 = few-step (0).
    pub consistc_ratio: f64,
    /// `enhanced_ratio` ζ: strength of the enhanced target; ζ ≥ 1 with λ = 0 is read as a
    /// guidance scale s and becomes 1 − 1/s (0).
    pub enhanced_ratio: f64,
    /// `scaled_cbl_eps` c ≥ 0 of the robust loss √(m + c²) − c (0).
    pub scaled_cbl_eps: f64,
    /// `ema_decay_rate` ∈ [0, 1] of `mod`: 0 = the online network, 1 = frozen (0.999).
    pub ema_decay_rate: f64,
    /// `enhanced_range` (t_lo, t_hi), open (default [0, 0.75]).
    pub enhanced_range: [f64; 2],
    /// `time_dist_ctrl` [a, b, s]: training times Beta(a, b)·s (default [1, 1, 1]).
    pub time_dist_ctrl: [f64; 3],
    /// `weight_funcion`: a `UCGM_TIME_WEIGHT_*` value (default NONE).
    pub weight_function: ucgm_time_weight,
    /// `wt_cosine_loss`: 1 adds the cosine-dissimilarity term, 0 not (default 0).
    pub wt_cosine_loss: i32,
    /// A `UCGM_OPTIMIZER_*` value (default AdamW).
    pub optimizer: ucgm_optimizer,
    /// Learning rate ≥ 0 (1e-4); no schedule, as the reference.
    pub lr: f64,
    /// Weight decay ≥ 0 (0).
    pub weight_decay: f64,
    /// β1 ∈ [0, 1) (0.9).
    pub beta1: f64,
    /// β2 ∈ [0, 1) (0.999).
    pub beta2: f64,
    /// eps > 0 (1e-8).
    pub eps: f64,
    /// Gradient-norm clipping threshold; 0 = no clipping (default 0).
    pub max_grad_norm: f64,
    /// Decay of the sampling EMA ∈ [0, 1] (0.9999).
    pub ema_decay: f64,
    /// Seed of the trainer's draws (t, z) (0).
    pub seed: u64,
    /// `ucgm_trainer_create_from_checkpoint`: 1 = do not restore the optimizer state (0).
    pub no_reopt: i32,
    /// `ucgm_trainer_create_from_checkpoint`: 1 = do not restore `mod` (0).
    pub no_reuni: i32,
}

unsafe impl Versioned for ucgm_train_params {
    const NAME: &'static str = "ucgm_train_params";
    const SIZES: &'static [usize] = &[std::mem::size_of::<ucgm_train_params>()];
    fn defaults() -> Self {
        let t = TransportSection::default();
        let run = TrainSection::default();
        ucgm_train_params {
            struct_size: std::mem::size_of::<Self>(),
            transport: UCGM_TRANSPORT_LINEAR,
            enhanced_style: UCGM_ENHANCED_NONE,
            lab_drop_ratio: t.lab_drop_ratio,
            consistc_ratio: t.consistc_ratio,
            enhanced_ratio: t.enhanced_ratio,
            scaled_cbl_eps: t.scaled_cbl_eps,
            ema_decay_rate: t.ema_decay_rate,
            enhanced_range: t.enhanced_range,
            time_dist_ctrl: t.time_dist_ctrl,
            weight_function: UCGM_TIME_WEIGHT_NONE,
            wt_cosine_loss: 0,
            optimizer: UCGM_OPTIMIZER_ADAMW,
            lr: 1e-4,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 0.0,
            ema_decay: run.ema_decay,
            seed: run.global_seed,
            no_reopt: 0,
            no_reuni: 0,
        }
    }
}

/// What `ucgm_trainer_get_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_trainer_info {
    /// Set by the caller to `sizeof(ucgm_trainer_info)`.
    pub struct_size: usize,
    /// Completed training steps (continues across checkpoints).
    pub step: u64,
    /// Loss of the last step of this handle (NaN before its first step).
    pub last_loss: f64,
    /// Gradient norm (before clipping) of the last step (NaN before the first).
    pub last_grad_norm: f64,
    /// Labels turned into the null class in the last step.
    pub last_dropped: u32,
    /// 1 when `mod` exists as a separate network (`UCGM_WEIGHTS_MOD` can be read).
    pub has_mod: i32,
    /// Trainable parameters.
    pub param_count: u64,
    /// Elements of one sample, C·H·W.
    pub image_len: u64,
    /// Number of classes K (label K = null class).
    pub num_classes: u32,
    /// Worker threads of the trainer's CPU pool (0 on CUDA).
    pub threads: u32,
    /// The backend in use: `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA`. Added after ABI
    /// 1's first release.
    pub backend: ucgm_backend,
    /// The CUDA device in use, or -1 on the CPU.
    pub cuda_device: i32,
    /// 1 when TF32 products are enabled (CUDA), else 0.
    pub tf32: i32,
    /// 1 when products run in bf16 mixed precision (CUDA only: a CPU trainer refuses
    /// bf16), else 0.
    pub bf16: i32,
    /// NUL-terminated UTF-8: the backend in use and, when `UCGM_BACKEND_AUTO` chose the
    /// CPU, why CUDA was not used (as `ucgm_model_info.backend_description`).
    pub backend_description: [c_char; UCGM_BACKEND_DESCRIPTION_LEN],
}

impl Default for ucgm_trainer_info {
    fn default() -> Self {
        ucgm_trainer_info {
            struct_size: 0,
            step: 0,
            last_loss: 0.0,
            last_grad_norm: 0.0,
            last_dropped: 0,
            has_mod: 0,
            param_count: 0,
            image_len: 0,
            num_classes: 0,
            threads: 0,
            backend: 0,
            cuda_device: -1,
            tf32: 0,
            bf16: 0,
            backend_description: [0; UCGM_BACKEND_DESCRIPTION_LEN],
        }
    }
}

// The first release of ABI 1 ended before `backend`, with no tail padding.
const TRAINER_INFO_V1_SIZE: usize = offset_of!(ucgm_trainer_info, backend);
const _: () = assert!(TRAINER_INFO_V1_SIZE.is_multiple_of(std::mem::align_of::<ucgm_trainer_info>()));

unsafe impl Versioned for ucgm_trainer_info {
    const OUTPUT: bool = true;
    const NAME: &'static str = "ucgm_trainer_info";
    const SIZES: &'static [usize] = &[TRAINER_INFO_V1_SIZE, size_of::<ucgm_trainer_info>()];
    fn defaults() -> Self {
        ucgm_trainer_info {
            struct_size: size_of::<Self>(),
            ..Default::default()
        }
    }
}

/// The state behind a trainer handle.
pub(crate) struct TrainerState {
    pub(super) trainer: AnyTrainer,
    /// The host's process group (`ucgm_trainer_set_communicator`), if any.
    pub(super) comm: Option<super::dist::HostCommunicator>,
    hooks: Hooks,
    last: Option<StepStats>,
    /// The backend in use and, when `auto` chose the CPU, why.
    backend_summary: String,
}

impl HasHooks for TrainerState {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn hooks_mut(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

/// Opaque trainer handle: create with `ucgm_trainer_create`, `ucgm_trainer_resume` or
/// `ucgm_trainer_create_from_checkpoint`, release with `ucgm_trainer_free`.
pub struct ucgm_trainer {
    handle: Handle<TrainerState>,
}

impl AsHandle for ucgm_trainer {
    type State = TrainerState;
    const NAME: &'static str = "trainer";
    fn handle(&self) -> &Handle<TrainerState> {
        &self.handle
    }
}

/// The engine's trainer configuration for `p` (every enum and number validated).
fn trainer_config(p: &ucgm_train_params) -> Result<TrainerConfig> {
    let name = |f: &str| format!("ucgm_train_params.{f}");
    let transport = params::enum_arg(&name("transport"), p.transport, &TRANSPORTS)?;
    let style = params::enum_arg(&name("enhanced_style"), p.enhanced_style, &STYLES)?;
    let weight = params::enum_arg(&name("weight_function"), p.weight_function, &WEIGHTINGS)?;
    let optimizer = params::enum_arg(&name("optimizer"), p.optimizer, &OPTIMIZERS)?;
    let f = |field: &str, v: f64| params::finite(&name(field), v);
    let max_grad_norm = f("max_grad_norm", p.max_grad_norm)?;
    if max_grad_norm < 0.0 {
        return Err(Error::invalid(format!(
            "{} = {max_grad_norm} must be ≥ 0 (0 = no clipping)",
            name("max_grad_norm")
        )));
    }
    let cfg = TrainerConfig {
        transport: TransportSection {
            transport_type: transport.name().to_string(),
            lab_drop_ratio: f("lab_drop_ratio", p.lab_drop_ratio)?,
            consistc_ratio: f("consistc_ratio", p.consistc_ratio)?,
            enhanced_ratio: f("enhanced_ratio", p.enhanced_ratio)?,
            enhanced_style: style,
            scaled_cbl_eps: f("scaled_cbl_eps", p.scaled_cbl_eps)?,
            ema_decay_rate: f("ema_decay_rate", p.ema_decay_rate)?,
            enhanced_range: params::finite_all(&name("enhanced_range"), p.enhanced_range)?,
            time_dist_ctrl: params::finite_all(&name("time_dist_ctrl"), p.time_dist_ctrl)?,
            weight_funcion: weight,
            wt_cosine_loss: params::bool_arg(&name("wt_cosine_loss"), p.wt_cosine_loss)?,
        },
        optimizer: OptimizerSection {
            kind: optimizer,
            lr: f("lr", p.lr)?,
            weight_decay: f("weight_decay", p.weight_decay)?,
            beta1: f("beta1", p.beta1)?,
            beta2: f("beta2", p.beta2)?,
            max_grad_norm: (max_grad_norm > 0.0).then_some(max_grad_norm),
            eps: f("eps", p.eps)?,
        },
        train: TrainSection {
            no_reopt: params::bool_arg(&name("no_reopt"), p.no_reopt)?,
            no_reuni: params::bool_arg(&name("no_reuni"), p.no_reuni)?,
            global_seed: p.seed,
            ema_decay: f("ema_decay", p.ema_decay)?,
            ..TrainSection::default()
        },
    };
    cfg.validate()?;
    Ok(cfg)
}

fn publish(out: &mut *mut ucgm_trainer, trainer: AnyTrainer, hooks: Hooks, backend_summary: String) {
    let state = TrainerState {
        trainer,
        comm: None,
        hooks,
        last: None,
        backend_summary,
    };
    *out = Box::into_raw(Box::new(ucgm_trainer { handle: Handle::new(state) }));
}

fn describe(t: &AnyTrainer, backend_summary: &str) -> String {
    let c = t.config();
    format!(
        "{} transport, λ = {}, ζ = {} ({:?}), {:?} lr {}, step {}, on {backend_summary}",
        c.transport.transport_type,
        c.transport.consistc_ratio,
        c.transport.enhanced_ratio,
        c.transport.enhanced_style,
        c.optimizer.kind,
        c.optimizer.lr,
        t.step()
    )
}

/// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
/// defaults listed at `ucgm_train_params`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_train_params_default(params: *mut ucgm_train_params, struct_size: usize) -> ucgm_status {
    call("ucgm_train_params_default", || params::write_defaults(params, struct_size))
}

/// Creates a trainer over a copy of `model`'s weights (the model handle is not changed
/// by training) and stores it in `*out` (NULL on failure). The sampling EMA starts as an
/// exact copy of the weights. The trainer runs on the model's kind of backend with the
/// same settings (CPU threads, or CUDA device and TF32), but its own pool or stream. The
/// new handle has no callbacks (callbacks are never copied between handles); the
/// creation is logged to the model's log callback. A `UCGM_ARCH_EDM2` model (forward
/// only) fails with `UCGM_STATUS_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_create(model: *mut ucgm_model, params: *const ucgm_train_params, out: *mut *mut ucgm_trainer) -> ucgm_status {
    with_handle("ucgm_trainer_create", model, |s: &mut ModelState, _| {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        let cfg = trainer_config(&params::read_params(params)?)?;
        let m = s.model.dit("ucgm_trainer_create")?;
        let backend = m.backend().independent_copy()?;
        let copy = AnyModel::from_params(m.config().clone(), backend, &m.read_params()?)?;
        let trainer = AnyTrainer::new(cfg, copy)?;
        s.hooks
            .log(UCGM_LOG_INFO, || format!("trainer created: {}", describe(&trainer, &s.backend_summary)));
        publish(out, trainer, Hooks::default(), s.backend_summary.clone());
        Ok(())
    })
}

/// Continues a run from a checkpoint written by `ucgm_trainer_save_checkpoint` exactly
/// (configuration, weights, EMA, `mod`, optimizer state, step count, random stream).
/// `model_params` may be NULL; only its backend fields (`backend`, `threads`,
/// `cuda_device`, `tf32`) and log callback are read.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_resume(path: *const c_char, model_params: *const ucgm_model_params, out: *mut *mut ucgm_trainer) -> ucgm_status {
    call("ucgm_trainer_resume", || {
        let super::load::LoadArgs {
            out, path, hooks, selection, ..
        } = super::load::load_args(out, path, model_params)?;
        let summary = selection.summary();
        let trainer = AnyTrainer::resume(&path, selection.backend)?;
        hooks.log(UCGM_LOG_INFO, || {
            format!("trainer resumed from {}: {}", path.display(), describe(&trainer, &summary))
        });
        publish(out, trainer, hooks, summary);
        Ok(())
    })
}

/// Starts a new run from a checkpoint with new settings (the reference's `train.ckpt`):
/// online and EMA weights are loaded, the optimizer state unless `no_reopt`, `mod`
/// unless `no_reuni`; the step count continues, the random stream starts from `seed`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_create_from_checkpoint(
    path: *const c_char,
    params: *const ucgm_train_params,
    model_params: *const ucgm_model_params,
    out: *mut *mut ucgm_trainer,
) -> ucgm_status {
    call("ucgm_trainer_create_from_checkpoint", || {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        let path = params::path_arg("path", path)?;
        let cfg = trainer_config(&params::read_params(params)?)?;
        let (_, hooks, selection) = super::load::backend_and_hooks(model_params)?;
        let summary = selection.summary();
        let trainer = AnyTrainer::from_checkpoint(&path, cfg, selection.backend)?;
        hooks.log(UCGM_LOG_INFO, || {
            format!("trainer started from {}: {}", path.display(), describe(&trainer, &summary))
        });
        publish(out, trainer, hooks, summary);
        Ok(())
    })
}

/// Releases a trainer handle. NULL is a no-op. No call may be running on the handle.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_free(trainer: *mut ucgm_trainer) {
    if trainer.is_null() {
        return;
    }
    call("ucgm_trainer_free", || {
        drop(Box::from_raw(trainer));
        Ok(())
    });
}

/// Fills `info` (set `info->struct_size = sizeof *info` first).
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_get_info(trainer: *mut ucgm_trainer, info: *mut ucgm_trainer_info) -> ucgm_status {
    with_handle("ucgm_trainer_get_info", trainer, |s, _| {
        let t = &s.trainer;
        let (backend, threads, cuda_device, tf32, bf16) = backend_fields(&t.backend());
        let v = ucgm_trainer_info {
            struct_size: 0,
            step: s.trainer.step(),
            last_loss: s.last.map_or(f64::NAN, |l| l.loss),
            last_grad_norm: s.last.map_or(f64::NAN, |l| l.grad_norm),
            last_dropped: s.last.map_or(0, |l| l.n_drop as u32),
            has_mod: i32::from(s.trainer.read_teacher()?.is_some()),
            param_count: t.layout().total() as u64,
            image_len: t.model_config().image_len() as u64,
            num_classes: t.model_config().num_classes as u32,
            threads,
            backend,
            cuda_device,
            tf32,
            bf16,
            backend_description: fixed_text(&s.backend_summary),
        };
        params::write_out(info, v)
    })
}

/// The checked batch of a training call: x `[batch, C, H, W]`, labels `[batch]`.
pub(super) unsafe fn batch_args<'a>(s: &TrainerState, x: *const f32, labels: *const i32, batch: usize) -> Result<(&'a [f32], Vec<usize>)> {
    let cfg = s.trainer.model_config();
    if batch == 0 {
        return Err(Error::invalid("batch must be at least 1"));
    }
    let n = params::elements("x", &[batch, cfg.image_len()])?;
    let labels = params::labels_arg("labels", labels, batch, cfg.num_classes, "K = the null class, for unconditional samples")?;
    Ok((params::finite_slice("x", x, n)?, labels))
}

pub(super) fn record(s: &mut TrainerState, stats: StepStats, loss: *mut f64) {
    s.last = Some(stats);
    if !loss.is_null() {
        // SAFETY: checked non-NULL; the caller promises it points to a double.
        unsafe { loss.write(stats.loss) };
    }
    s.hooks.log(UCGM_LOG_DEBUG, || {
        format!(
            "step {}: loss {:.6}, grad norm {:.4}, {} labels dropped",
            stats.step, stats.loss, stats.grad_norm, stats.n_drop
        )
    });
}

/// One UCGM-T step on a batch, with t and z drawn from the trainer's seeded stream.
/// * `x` — `[batch, C, H, W]` training data (finite);
/// * `labels` — `[batch]` classes in 0..=K (K = null class, unconditional);
/// * `loss` — NULL, or receives the batch loss. It can be non-finite only where the
///   reference's is (e.g. t = 0 with λ ≠ 0); the gradient is then zeroed, as there.
#[no_mangle]
pub unsafe extern "C" fn ucgm_train_step(trainer: *mut ucgm_trainer, x: *const f32, labels: *const i32, batch: usize, loss: *mut f64) -> ucgm_status {
    with_handle("ucgm_train_step", trainer, |s, _| {
        let (x, labels) = batch_args(s, x, labels, batch)?;
        let stats = s.trainer.train_step(x, &labels)?;
        record(s, stats, loss);
        Ok(())
    })
}

/// One UCGM-T step with the caller's times and noise instead of the trainer's draws.
/// * `x`, `labels`, `loss` — as `ucgm_train_step`;
/// * `t` — `[batch]` training times in [0, 1], internal time (0 = data, 1 = noise);
/// * `z` — `[batch, C, H, W]` noise (finite).
#[no_mangle]
pub unsafe extern "C" fn ucgm_train_step_with(
    trainer: *mut ucgm_trainer,
    x: *const f32,
    labels: *const i32,
    t: *const f32,
    z: *const f32,
    batch: usize,
    loss: *mut f64,
) -> ucgm_status {
    with_handle("ucgm_train_step_with", trainer, |s, _| {
        let (x, labels) = batch_args(s, x, labels, batch)?;
        let t = params::finite_slice("t", t, batch)?;
        if let Some((i, v)) = t.iter().enumerate().find(|(_, v)| !(0.0..=1.0).contains(*v)) {
            return Err(Error::invalid(format!("t[{i}] = {v} is outside [0, 1]")));
        }
        let z = params::finite_slice("z", z, x.len())?;
        let stats = s.trainer.train_step_with(x, &labels, t, z)?;
        record(s, stats, loss);
        Ok(())
    })
}

/// `n_batches` UCGM-T steps, one per batch, with the trainer's draws; progress is
/// reported after every step, and the call stops with `UCGM_STATUS_CANCELLED` at the
/// next step boundary when the progress callback returns non-zero or
/// `ucgm_trainer_cancel` is called (the steps already taken stay applied and their
/// losses written; `ucgm_trainer_get_info` gives the step count).
/// * `x` — `[n_batches, batch, C, H, W]`;
/// * `labels` — `[n_batches, batch]` in 0..=K;
/// * `losses` — NULL, or `[n_batches]` (`losses_len` = n_batches) receiving each loss.
#[no_mangle]
pub unsafe extern "C" fn ucgm_train_steps(
    trainer: *mut ucgm_trainer,
    x: *const f32,
    labels: *const i32,
    n_batches: usize,
    batch: usize,
    losses: *mut f64,
    losses_len: usize,
) -> ucgm_status {
    with_handle_cancellable("ucgm_train_steps", trainer, |s, cancel| {
        if n_batches == 0 {
            return Err(Error::invalid("n_batches must be at least 1"));
        }
        let total = params::elements("batches", &[n_batches, batch])?;
        let (x, labels) = batch_args(s, x, labels, total)?;
        let losses = if losses.is_null() {
            None
        } else {
            params::check_buffer_len("losses", losses_len, n_batches)?;
            Some(params::slice_mut("losses", losses, losses_len)?)
        };
        let per = x.len() / n_batches;
        let hooks = s.hooks;
        let start = Instant::now();
        let mut losses = losses;
        hooks.with_control(cancel, |ctl| {
            ctl.check()?;
            for i in 0..n_batches {
                let stats = s.trainer.train_step(&x[i * per..(i + 1) * per], &labels[i * batch..(i + 1) * batch])?;
                record(s, stats, ptr::null_mut());
                if let Some(l) = losses.as_deref_mut() {
                    l[i] = stats.loss;
                }
                ctl.step(i + 1, n_batches)?;
            }
            Ok(())
        })?;
        hooks.log(UCGM_LOG_INFO, || {
            format!(
                "trained {n_batches} steps of batch {batch} in {:.3} s (now at step {}, loss {:.6})",
                start.elapsed().as_secs_f64(),
                s.trainer.step(),
                s.last.map_or(f64::NAN, |l| l.loss)
            )
        });
        Ok(())
    })
}

/// Writes a checkpoint (everything `ucgm_trainer_resume` needs) atomically: on failure
/// an existing file at `path` is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_save_checkpoint(trainer: *mut ucgm_trainer, path: *const c_char) -> ucgm_status {
    with_handle("ucgm_trainer_save_checkpoint", trainer, |s, _| {
        let path = params::path_arg("path", path)?;
        s.trainer.save_checkpoint(&path)?;
        s.hooks
            .log(UCGM_LOG_INFO, || format!("checkpoint at step {} saved to {}", s.trainer.step(), path.display()));
        Ok(())
    })
}

/// The weights `which` selects, on the host.
fn read_weights(t: &AnyTrainer, which: ucgm_weights) -> Result<Vec<f32>> {
    match params::enum_arg("which", which, &WEIGHTS)? {
        UCGM_WEIGHTS_ONLINE => t.read_online(),
        UCGM_WEIGHTS_EMA => t.read_ema(),
        _ => t
            .read_teacher()?
            .ok_or_else(|| Error::invalid("`mod` does not exist as a separate network (ema_decay_rate = 0, or no step has needed it yet)")),
    }
}

/// Saves the online (`UCGM_WEIGHTS_ONLINE`), sampling-EMA or `mod` weights as a model
/// weights file that `ucgm_model_load` reads, atomically.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_save_weights(trainer: *mut ucgm_trainer, which: ucgm_weights, path: *const c_char) -> ucgm_status {
    with_handle("ucgm_trainer_save_weights", trainer, |s, _| {
        let path = params::path_arg("path", path)?;
        let w = read_weights(&s.trainer, which)?;
        weights::save(Path::new(&path), s.trainer.model_config(), s.trainer.layout(), &w)?;
        s.hooks.log(UCGM_LOG_INFO, || format!("weights {which} saved to {}", path.display()));
        Ok(())
    })
}

/// A new model handle holding a copy of the online, sampling-EMA or `mod` weights (to
/// sample during training); stored in `*out` (NULL on failure), on the trainer's kind of
/// backend and settings (its own pool or stream) and with no callbacks.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_export_model(trainer: *mut ucgm_trainer, which: ucgm_weights, out: *mut *mut ucgm_model) -> ucgm_status {
    with_handle("ucgm_trainer_export_model", trainer, |s, _| {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        let w = read_weights(&s.trainer, which)?;
        let backend = s.trainer.backend().independent_copy()?;
        let copy = AnyModel::from_params(s.trainer.model_config().clone(), backend, &w)?;
        s.hooks.log(UCGM_LOG_INFO, || format!("weights {which} exported to a new model handle"));
        model::publish(out, copy, Hooks::default(), s.backend_summary.clone(), None, None);
        Ok(())
    })
}

/// Sets (or with NULL clears) the handle's log callback.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_set_log_callback(trainer: *mut ucgm_trainer, callback: ucgm_log_callback, user_data: *mut c_void) -> ucgm_status {
    super::set_log("ucgm_trainer_set_log_callback", trainer, callback, user_data)
}

/// Sets (or with NULL clears) the handle's progress callback, called after every step
/// of `ucgm_train_steps`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_set_progress_callback(
    trainer: *mut ucgm_trainer,
    callback: ucgm_progress_callback,
    user_data: *mut c_void,
) -> ucgm_status {
    super::set_progress("ucgm_trainer_set_progress_callback", trainer, callback, user_data)
}

/// Asks the `ucgm_train_steps` call running on `trainer` to stop at its next step; it
/// then fails with `UCGM_STATUS_CANCELLED` and the handle stays usable. Callable from any
/// thread at any time; the flag is cleared when the next `ucgm_train_steps` starts.
#[no_mangle]
pub unsafe extern "C" fn ucgm_trainer_cancel(trainer: *mut ucgm_trainer) -> ucgm_status {
    super::cancel("ucgm_trainer_cancel", trainer)
}
