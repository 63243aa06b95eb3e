//! The model handle (`ucgm_model`): a SiT, TiT, LightningDiT or DDT network, or the
//! forward-only EDM2 UNet, on the backend chosen when the handle is made
//! (`ucgm_model_params.backend`: auto, CPU or CUDA), created from a configuration
//! (seeded reference initialisation) or a safetensors file; info, save, and the raw
//! network evaluation `ucgm_forward`.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::ptr;

use super::params::{self, Versioned};
use super::{
    call, ucgm_backend, ucgm_log_callback, ucgm_progress_callback, ucgm_status, with_handle, AsHandle, Handle, HasHooks, Hooks, UCGM_BACKEND_AUTO,
    UCGM_LOG_INFO,
};
use crate::denoiser::Denoiser;
use crate::engine::{select, AnyBackend, AnyEdm2, AnyModel, AnyNetwork, BackendRequest, Selection};
use crate::error::{Error, Result};
use crate::latent_norm::LatentNorm;
use crate::model::config::{Arch, ModelConfig};
use crate::model::weights::{self, CheckpointWeights};
use crate::preset;
use crate::sampler::SamplerConfig;

/// Network family (`int32_t`).
pub type ucgm_arch = i32;
/// Plain DiT with continuous time (LayerNorm, GELU MLP).
pub const UCGM_ARCH_SIT: ucgm_arch = 0;
/// UCGM's TiT (RMSNorm, qk-norm, 2-D RoPE, SwiGLU).
pub const UCGM_ARCH_TIT: ucgm_arch = 1;
/// LightningDiT (TiT's layers with learned RMSNorm weights, qk-norm off); its guidance
/// acts on channels 0–2 only.
pub const UCGM_ARCH_LIGHTNINGDIT: ucgm_arch = 2;
/// DDT, the encoder–decoder DiT (loaded from weights only: its encoder depth is not a
/// creation parameter).
pub const UCGM_ARCH_DDT: ucgm_arch = 3;
/// The EDM2 UNet (reference `networks/edm2.py`), loaded from a state dict with the
/// reference's tensor names (recognised by its `emb_fourier.freqs`); forward only:
/// sampling (EDM transport by default) and `ucgm_forward` work, training, parameter
/// access and saving fail with `UCGM_STATUS_UNSUPPORTED`.
pub const UCGM_ARCH_EDM2: ucgm_arch = 4;

/// Largest accepted thread count (`crate::limits::MAX_THREADS`).
const MAX_THREADS: i32 = crate::limits::MAX_THREADS as i32;

/// Largest accepted CUDA device ordinal.
const MAX_CUDA_DEVICE: i32 = 1023;

/// Bytes of the `backend_description` text of the info structs, NUL included.
pub const UCGM_BACKEND_DESCRIPTION_LEN: usize = 256;

/// How to create or load a model. Fill with `ucgm_model_params_default`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_model_params {
    /// `sizeof(ucgm_model_params)`, set by `ucgm_model_params_default`.
    pub struct_size: usize,
    /// Create: a reference name such as "TiT-XL/2" or "SiT-S/2" (sizes S, B, L, XL; patch
    /// 1, 2 or 4); `arch`, `patch`, `hidden`, `depth` and `heads` are then ignored. NULL
    /// (default): the custom shape below. Ignored by load.
    pub name: *const c_char,
    /// Create: `UCGM_ARCH_SIT`, `UCGM_ARCH_TIT` or `UCGM_ARCH_LIGHTNINGDIT` (default TiT).
    pub arch: ucgm_arch,
    /// Create: side of the square input (default 32).
    pub input_size: u32,
    /// Create: input = output channels (default 4).
    pub in_channels: u32,
    /// Create: number of classes K; label K is the null (unconditional) class (default 1000).
    pub num_classes: u32,
    /// Create, custom shape: patch side (default 2).
    pub patch: u32,
    /// Create, custom shape: hidden width D (default 384).
    pub hidden: u32,
    /// Create, custom shape: transformer blocks (default 12).
    pub depth: u32,
    /// Attention heads. Create, custom shape: 0 (default) = hidden / 64. Load: 0 = from the
    /// file's metadata or its shapes; non-zero overrides (needed only for a reference
    /// checkpoint of a non-standard width).
    pub heads: u32,
    /// Create: seed of the reference initialisation (default 0).
    pub seed: u64,
    /// `UCGM_BACKEND_AUTO` (default: CUDA when it can be used here, else the CPU, and the
    /// log callback is told which and why), `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA`
    /// (fails with `UCGM_STATUS_BACKEND` and the reason when CUDA cannot be used).
    pub backend: ucgm_backend,
    /// CPU worker threads of this model's own pool; 0 (default) = one per logical CPU.
    /// Unused on CUDA.
    pub threads: i32,
    /// Log callback of the new handle (also receives the creation messages); NULL = silent.
    pub log_callback: ucgm_log_callback,
    /// Passed to `log_callback`.
    pub log_user_data: *mut c_void,
    /// CUDA device ordinal for `UCGM_BACKEND_CUDA` / `UCGM_BACKEND_AUTO` (default 0).
    /// Added after ABI 1's first release (a caller with the older, shorter struct gets 0).
    pub cuda_device: i32,
    /// 1 = let cuBLAS use TF32 tensor cores for float32 products on CUDA (about 3×
    /// faster, ~1e-3 relative error per product instead of ~1e-7); 0 (default) = off.
    /// Ignored on the CPU. Added with `cuda_device`.
    pub tf32: i32,
    /// 1 = bf16 mixed precision: every matrix product on bf16-rounded operands with
    /// float32 accumulation, everything else float32; outputs within ~1e-2 relative of
    /// float32. 0 (default) = off. On CUDA (tensor cores) for sampling and training, with
    /// float32 master weights and optimizer state. On the CPU for sampling: a model
    /// handle holds its Linear weights in bf16 (about half the memory; `bytes_held` says
    /// so) and reading its weights gives the bf16-rounded values; a trainer refuses it
    /// (training on the CPU runs in float32). Added with `cuda_device`.
    pub bf16: i32,
    /// Load of a training checkpoint (`ucgm train`, the demo, `ucgm_trainer_save`):
    /// which of its weights become the model: `UCGM_CHECKPOINT_EMA` (0, default: the
    /// sampling EMA, as the reference samples), `UCGM_CHECKPOINT_ONLINE` or
    /// `UCGM_CHECKPOINT_MOD`. A plain weights file has one set: `UCGM_CHECKPOINT_MOD` is
    /// then an error, the others load it. Occupies what was tail padding before, so the
    /// struct's size is unchanged (an older caller's zeroed struct means EMA).
    pub checkpoint_weights: ucgm_checkpoint_weights,
}

/// Which weights of a training checkpoint `ucgm_model_load` reads (`int32_t`).
pub type ucgm_checkpoint_weights = i32;
/// The sampling EMA (default).
pub const UCGM_CHECKPOINT_EMA: ucgm_checkpoint_weights = 0;
/// The online (trained) weights.
pub const UCGM_CHECKPOINT_ONLINE: ucgm_checkpoint_weights = 1;
/// The auxiliary network `mod` (exists only in runs that use it).
pub const UCGM_CHECKPOINT_MOD: ucgm_checkpoint_weights = 2;

const CHECKPOINT_WEIGHTS: [(i32, &str, CheckpointWeights); 3] = [
    (UCGM_CHECKPOINT_EMA, "UCGM_CHECKPOINT_EMA", CheckpointWeights::Ema),
    (UCGM_CHECKPOINT_ONLINE, "UCGM_CHECKPOINT_ONLINE", CheckpointWeights::Online),
    (UCGM_CHECKPOINT_MOD, "UCGM_CHECKPOINT_MOD", CheckpointWeights::Mod),
];

// `checkpoint_weights` filled the tail padding of the previous release: same size.
const _: () = assert!(offset_of!(ucgm_model_params, checkpoint_weights) + 4 == size_of::<ucgm_model_params>());

// The first release of ABI 1 ended before `cuda_device`, with no tail padding.
const MODEL_PARAMS_V1_SIZE: usize = offset_of!(ucgm_model_params, cuda_device);
const _: () = assert!(MODEL_PARAMS_V1_SIZE.is_multiple_of(std::mem::align_of::<ucgm_model_params>()));

unsafe impl Versioned for ucgm_model_params {
    const NAME: &'static str = "ucgm_model_params";
    const SIZES: &'static [usize] = &[MODEL_PARAMS_V1_SIZE, size_of::<ucgm_model_params>()];
    fn defaults() -> Self {
        ucgm_model_params {
            struct_size: std::mem::size_of::<Self>(),
            name: ptr::null(),
            arch: UCGM_ARCH_TIT,
            input_size: 32,
            in_channels: 4,
            num_classes: 1000,
            patch: 2,
            hidden: 384,
            depth: 12,
            heads: 0,
            seed: 0,
            backend: UCGM_BACKEND_AUTO,
            threads: 0,
            log_callback: None,
            log_user_data: ptr::null_mut(),
            cuda_device: 0,
            tf32: 0,
            bf16: 0,
            checkpoint_weights: UCGM_CHECKPOINT_EMA,
        }
    }
}

/// What `ucgm_model_get_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_model_info {
    /// Set by the caller to `sizeof(ucgm_model_info)`.
    pub struct_size: usize,
    /// `UCGM_ARCH_SIT`, `UCGM_ARCH_TIT`, `UCGM_ARCH_LIGHTNINGDIT`, `UCGM_ARCH_DDT` or
    /// `UCGM_ARCH_EDM2`.
    pub arch: ucgm_arch,
    /// Side H = W of one sample.
    pub input_size: u32,
    /// Channels C of one sample.
    pub in_channels: u32,
    /// Number of classes K (label K = null class).
    pub num_classes: u32,
    /// Patch side p (EDM2: 1).
    pub patch: u32,
    /// Hidden width D (EDM2: the model channels of the first level).
    pub hidden: u32,
    /// Transformer blocks (EDM2: residual blocks per encoder level).
    pub depth: u32,
    /// Attention heads (EDM2: 0, the count varies per block: channels / 64).
    pub heads: u32,
    /// MLP hidden width (EDM2: 0).
    pub mlp_hidden: u32,
    /// Tokens per sample, (H / p)² (EDM2: H·W).
    pub tokens: u32,
    /// Elements of one sample, C·H·W.
    pub image_len: u64,
    /// Trainable parameters.
    pub param_count: u64,
    /// The backend in use: `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA` (never AUTO).
    pub backend: ucgm_backend,
    /// Worker threads of the model's CPU pool (0 on CUDA).
    pub threads: u32,
    /// The CUDA device in use, or -1 on the CPU. Added after ABI 1's first release.
    pub cuda_device: i32,
    /// 1 when TF32 products are enabled (CUDA), else 0.
    pub tf32: i32,
    /// 1 when products run in bf16 mixed precision (CUDA; on the CPU: sampling), else 0.
    pub bf16: i32,
    /// NUL-terminated UTF-8: the backend in use and, when `UCGM_BACKEND_AUTO` chose the
    /// CPU, why CUDA was not used, e.g. "cuda:0 NVIDIA H200 (sm_90, 139.8 GiB, 1
    /// device(s))" or "cpu (16 threads); cuda unavailable: the CUDA driver library
    /// (libcuda.so) not found (…)". Cut at a character boundary if longer.
    pub backend_description: [c_char; UCGM_BACKEND_DESCRIPTION_LEN],
    /// Bytes the handle holds now: the weights once, in the layout its use wants (a
    /// loaded model that only samples keeps the transposed inference layout instead of
    /// the plain one), gradients or caches when present, and the activation workspace
    /// kept for the last batch size sampled (allocated once per batch size, reused across
    /// steps and calls; 0 before the first sample). Added after ABI 1's
    /// `backend_description`.
    pub bytes_held: u64,
}

impl Default for ucgm_model_info {
    fn default() -> Self {
        ucgm_model_info {
            struct_size: 0,
            arch: 0,
            input_size: 0,
            in_channels: 0,
            num_classes: 0,
            patch: 0,
            hidden: 0,
            depth: 0,
            heads: 0,
            mlp_hidden: 0,
            tokens: 0,
            image_len: 0,
            param_count: 0,
            backend: 0,
            threads: 0,
            cuda_device: -1,
            tf32: 0,
            bf16: 0,
            backend_description: [0; UCGM_BACKEND_DESCRIPTION_LEN],
            bytes_held: 0,
        }
    }
}

// The first release of ABI 1 ended before `cuda_device`, with no tail padding.
const MODEL_INFO_V1_SIZE: usize = offset_of!(ucgm_model_info, cuda_device);
const _: () = assert!(MODEL_INFO_V1_SIZE.is_multiple_of(std::mem::align_of::<ucgm_model_info>()));
// The second release ended after `backend_description`.
const MODEL_INFO_V2_SIZE: usize = offset_of!(ucgm_model_info, bytes_held);

unsafe impl Versioned for ucgm_model_info {
    const OUTPUT: bool = true;
    const NAME: &'static str = "ucgm_model_info";
    const SIZES: &'static [usize] = &[MODEL_INFO_V1_SIZE, MODEL_INFO_V2_SIZE, size_of::<ucgm_model_info>()];
    fn defaults() -> Self {
        ucgm_model_info {
            struct_size: size_of::<Self>(),
            ..Default::default()
        }
    }
}

/// The state behind a model handle.
pub(crate) struct ModelState {
    pub model: AnyNetwork,
    pub hooks: Hooks,
    /// The backend in use and, when `auto` chose the CPU, why (`Selection::summary`).
    pub backend_summary: String,
    /// How this model is meant to be sampled (from its file, or set by the caller);
    /// `ucgm_sample` uses it, `ucgm_model_save` stores it.
    pub preset: Option<SamplerConfig>,
    /// Seed of the next `ucgm_sample` call; advances by one per call.
    pub seed: u64,
    /// How the model's latents are normalised (from its file's `ucgm_latent_norm`
    /// metadata, or set by the caller); `ucgm_sample_image` inverts it before decoding,
    /// `ucgm_model_save` stores it. None = identity.
    pub latent_norm: Option<LatentNorm>,
}

impl HasHooks for ModelState {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn hooks_mut(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

/// Opaque model handle: create with `ucgm_model_create` or `ucgm_model_load`, release
/// with `ucgm_model_free`.
pub struct ucgm_model {
    handle: Handle<ModelState>,
}

impl AsHandle for ucgm_model {
    type State = ModelState;
    const NAME: &'static str = "model";
    fn handle(&self) -> &Handle<ModelState> {
        &self.handle
    }
}

/// The families `ucgm_model_create` builds (DDT is loaded from weights only).
const ARCHS: [(i32, &str, Arch); 3] = [
    (UCGM_ARCH_SIT, "UCGM_ARCH_SIT", Arch::Sit),
    (UCGM_ARCH_TIT, "UCGM_ARCH_TIT", Arch::Tit),
    (UCGM_ARCH_LIGHTNINGDIT, "UCGM_ARCH_LIGHTNINGDIT", Arch::LightningDit),
];

fn arch_code(a: Arch) -> ucgm_arch {
    match a {
        Arch::Sit => UCGM_ARCH_SIT,
        Arch::Tit => UCGM_ARCH_TIT,
        Arch::LightningDit => UCGM_ARCH_LIGHTNINGDIT,
        Arch::Ddt { .. } => UCGM_ARCH_DDT,
    }
}

/// The backend `p` asks for (`backend`, `threads`, `cuda_device`, `tf32`, `bf16`), or why it
/// cannot be had; the choice and its reason go to the log callback at `UCGM_LOG_INFO`.
pub(crate) fn backend_for(p: &ucgm_model_params, hooks: &Hooks) -> Result<Selection> {
    let choice = super::backend_choice(p.backend)?;
    if !(0..=MAX_THREADS).contains(&p.threads) {
        return Err(Error::invalid(format!(
            "threads = {} must lie in 0..={MAX_THREADS} (0 = one per logical CPU)",
            p.threads
        )));
    }
    if !(0..=MAX_CUDA_DEVICE).contains(&p.cuda_device) {
        return Err(Error::invalid(format!(
            "ucgm_model_params.cuda_device = {} must lie in 0..={MAX_CUDA_DEVICE}",
            p.cuda_device
        )));
    }
    let request = BackendRequest {
        choice,
        threads: p.threads as usize,
        device: p.cuda_device as usize,
        tf32: params::bool_arg("ucgm_model_params.tf32", p.tf32)?,
        bf16: params::bool_arg("ucgm_model_params.bf16", p.bf16)?,
    };
    let selection = select(&request)?;
    hooks.log(UCGM_LOG_INFO, || selection.log_line());
    Ok(selection)
}

/// The info structs' `backend`, `threads`, `cuda_device`, `tf32` and `bf16` of a backend.
pub(crate) fn backend_fields(b: &AnyBackend) -> (ucgm_backend, u32, i32, i32, i32) {
    let code = match b.kind() {
        crate::engine::BackendKind::Cpu => super::UCGM_BACKEND_CPU,
        crate::engine::BackendKind::Cuda => super::UCGM_BACKEND_CUDA,
    };
    let device = b.cuda_device().map_or(-1, |d| d as i32);
    (code, b.threads() as u32, device, i32::from(b.tf32()), i32::from(b.bf16()))
}

/// `text` as a NUL-terminated C string in a fixed buffer, cut at a character boundary.
pub(crate) fn fixed_text<const N: usize>(text: &str) -> [c_char; N] {
    let text = text.replace('\0', " ");
    let mut end = text.len().min(N - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = [0 as c_char; N];
    for (o, &b) in out.iter_mut().zip(&text.as_bytes()[..end]) {
        *o = b as c_char;
    }
    out
}

/// The configuration a create call asks for.
unsafe fn config_for(p: &ucgm_model_params) -> Result<ModelConfig> {
    let (input, channels, classes) = (p.input_size as usize, p.in_channels as usize, p.num_classes as usize);
    if !p.name.is_null() {
        let name = params::str_arg("ucgm_model_params.name", p.name)?;
        return ModelConfig::from_name(name, input, channels, classes);
    }
    let arch = params::enum_arg("ucgm_model_params.arch", p.arch, &ARCHS)?;
    let heads = match p.heads {
        0 if p.hidden.is_multiple_of(64) && p.hidden > 0 => p.hidden as usize / 64,
        0 => {
            return Err(Error::invalid(format!(
                "heads = 0 means hidden / 64, but hidden = {} is not a multiple of 64: set heads",
                p.hidden
            )))
        }
        h => h as usize,
    };
    let cfg = ModelConfig {
        arch,
        input_size: input,
        in_channels: channels,
        patch: p.patch as usize,
        hidden: p.hidden as usize,
        depth: p.depth as usize,
        heads,
        num_classes: classes,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn describe(m: &AnyNetwork, backend_summary: &str) -> String {
    let m = match m {
        AnyNetwork::Dit(m) => m,
        AnyNetwork::Edm2(e) => {
            let c = e.config();
            return format!(
                "EDM2 UNet {}x{}x{} input, model channels {}, channel_mult {:?}, {} blocks per level, {} classes, {} parameters, on {backend_summary}",
                c.in_channels,
                c.input_size,
                c.input_size,
                c.model_channels,
                c.channel_mult,
                c.num_blocks,
                c.num_classes,
                c.parameter_count(),
            );
        }
    };
    let c = m.config();
    format!(
        "{} {}x{}x{} input, patch {}, hidden {}, depth {}, heads {}, {} classes, {} parameters, on {backend_summary}",
        c.arch.name(),
        c.in_channels,
        c.input_size,
        c.input_size,
        c.patch,
        c.hidden,
        c.depth,
        c.heads,
        c.num_classes,
        m.layout().total(),
    )
}

/// Fails with `Error::NonFinite` naming the first tensor of a loaded file that holds a
/// NaN or an infinity (the engine would otherwise sample NaN without a word).
fn check_finite_weights(m: &AnyModel, path: &std::path::Path) -> Result<()> {
    let p = m.read_params()?;
    for e in m.layout().entries() {
        if let Some(i) = p[e.range()].iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "{}: tensor {} holds {} at index {i}",
                path.display(),
                e.name,
                p[e.range()][i]
            )));
        }
    }
    Ok(())
}

/// Whether `path` holds an EDM2 state dict (its stored Fourier frequencies), as
/// `ucgm sample` recognises one. Anything unreadable is left to the DiT loader's errors.
fn is_edm2_file(path: &std::path::Path) -> bool {
    crate::tensor_file::TensorFile::open_header(path).is_ok_and(|f| f.contains("emb_fourier.freqs"))
}

/// Boxes a new handle into `*out`.
pub(crate) fn publish(
    out: &mut *mut ucgm_model,
    model: impl Into<AnyNetwork>,
    hooks: Hooks,
    backend_summary: String,
    preset: Option<SamplerConfig>,
    latent_norm: Option<LatentNorm>,
) {
    let state = ModelState {
        model: model.into(),
        hooks,
        backend_summary,
        preset,
        seed: 0,
        latent_norm,
    };
    *out = Box::into_raw(Box::new(ucgm_model { handle: Handle::new(state) }));
}

/// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
/// defaults: a TiT-S/2-shaped network on a 4×32×32 input with 1000 classes, seed 0,
/// automatic backend (CUDA device 0 if usable, TF32 off), one thread per logical CPU, no
/// log callback.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_params_default(params: *mut ucgm_model_params, struct_size: usize) -> ucgm_status {
    call("ucgm_model_params_default", || params::write_defaults(params, struct_size))
}

/// Creates a model with the reference's from-scratch initialisation (seeded; a fresh
/// network outputs F = 0) and stores the handle in `*out` (NULL on failure).
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_create(params: *const ucgm_model_params, out: *mut *mut ucgm_model) -> ucgm_status {
    call("ucgm_model_create", || {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        let p = params::read_params(params)?;
        let hooks = Hooks {
            log: p.log_callback,
            log_user_data: p.log_user_data,
            ..Hooks::default()
        };
        let cfg = config_for(&p)?;
        let selection = backend_for(&p, &hooks)?;
        let summary = selection.summary();
        let model = AnyNetwork::from(AnyModel::init(cfg, selection.backend, p.seed)?);
        hooks.log(UCGM_LOG_INFO, || format!("created {} (seed {})", describe(&model, &summary), p.seed));
        publish(out, model, hooks, summary, None, None);
        Ok(())
    })
}

/// Loads a safetensors weights file (written by `ucgm_model_save`, `ucgm export` or
/// converted from a reference checkpoint) or a training checkpoint (`ucgm train`, the
/// demo, `ucgm_trainer_save`: its sampling EMA unless `checkpoint_weights` says
/// otherwise) and stores the handle in `*out` (NULL on failure). `params` may be NULL
/// (defaults); only `heads`, `checkpoint_weights`, the backend fields (`backend`,
/// `threads`, `cuda_device`, `tf32`, `bf16`) and the log callback are read. A sampler
/// preset stored in the file (see `ucgm_sample`) comes with the model. An EDM2 state
/// dict (the reference's tensor names; recognised by its `emb_fourier.freqs`, its
/// configuration inferred from the shapes; `heads` and `checkpoint_weights` unused)
/// loads as a forward-only `UCGM_ARCH_EDM2` handle sampled with the EDM transport.
/// Fails with `UCGM_STATUS_IO` (missing/unreadable), `UCGM_STATUS_FORMAT` (truncated,
/// corrupt, or its checksum does not match: damaged data), `UCGM_STATUS_WEIGHTS`
/// (tensors that do not form a model, or a checkpoint without the weights asked for),
/// `UCGM_STATUS_NON_FINITE` (a weight is NaN or infinite) or
/// `UCGM_STATUS_OUT_OF_MEMORY`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_load(path: *const c_char, params: *const ucgm_model_params, out: *mut *mut ucgm_model) -> ucgm_status {
    call("ucgm_model_load", || {
        let super::load::LoadArgs {
            out,
            path,
            params: p,
            hooks,
            selection,
        } = super::load::load_args(out, path, params)?;
        let summary = selection.summary();
        let heads = (p.heads != 0).then_some(p.heads as usize);
        let which = params::enum_arg("ucgm_model_params.checkpoint_weights", p.checkpoint_weights, &CHECKPOINT_WEIGHTS)?;
        if is_edm2_file(&path) {
            // Weights are checked finite by name while they load.
            let model = AnyNetwork::from(AnyEdm2::load(&path, selection.backend, None)?);
            hooks.log(UCGM_LOG_INFO, || format!("loaded {}: {}", path.display(), describe(&model, &summary)));
            publish(out, model, hooks, summary, None, None);
            return Ok(());
        }
        let w = weights::load_file(&path, heads, Some(which))?;
        let preset = preset::from_metadata(&path, &w.metadata)?;
        let latent_norm = LatentNorm::from_metadata(&path, &w.metadata)?;
        let mut model = AnyModel::from_params_owned(w.cfg, selection.backend, w.params)?;
        // A loaded model samples until a trainer takes it: hold the weights once, in the
        // layout the inference GEMMs want (reads, saves and trainers convert back).
        model.enter_inference_layout()?;
        check_finite_weights(&model, &path)?;
        let model = AnyNetwork::from(model);
        let source = w.checkpoint.map_or(String::new(), |c| format!(" (training checkpoint, {} weights)", c.name()));
        hooks.log(UCGM_LOG_INFO, || format!("loaded {}{source}: {}", path.display(), describe(&model, &summary)));
        if let Some(p) = &preset {
            hooks.log(UCGM_LOG_INFO, || format!("sampler preset from the file: {}", preset::describe(p)));
        }
        if let Some(n) = &latent_norm {
            hooks.log(UCGM_LOG_INFO, || format!("latent normalisation from the file: {}", n.describe()));
        }
        publish(out, model, hooks, summary, preset, latent_norm);
        Ok(())
    })
}

/// Saves the weights as safetensors (reference tensor names, configuration, sampler
/// preset, latent normalisation and checksum in the metadata), atomically: on failure
/// an existing file at `path` is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_save(model: *mut ucgm_model, path: *const c_char) -> ucgm_status {
    with_handle("ucgm_model_save", model, |s, _| {
        let path = params::path_arg("path", path)?;
        let mut extra = match &s.preset {
            Some(p) => preset::metadata(p)?,
            None => Default::default(),
        };
        if let Some(n) = &s.latent_norm {
            extra.insert(crate::latent_norm::LATENT_NORM_KEY.to_string(), n.to_json()?);
        }
        s.model.dit("ucgm_model_save")?.save_with_metadata(&path, &extra)?;
        s.hooks.log(UCGM_LOG_INFO, || format!("saved {}", path.display()));
        Ok(())
    })
}

/// Releases a model handle. NULL is a no-op. No call may be running on the handle.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_free(model: *mut ucgm_model) {
    if model.is_null() {
        return;
    }
    call("ucgm_model_free", || {
        drop(Box::from_raw(model));
        Ok(())
    });
}

/// Fills `info` (set `info->struct_size = sizeof *info` first).
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_get_info(model: *mut ucgm_model, info: *mut ucgm_model_info) -> ucgm_status {
    with_handle("ucgm_model_get_info", model, |s, _| {
        let (backend, threads, cuda_device, tf32, bf16) = backend_fields(&s.model.backend());
        let shape = match &s.model {
            AnyNetwork::Dit(m) => {
                let c = m.config();
                ucgm_model_info {
                    arch: arch_code(c.arch),
                    input_size: c.input_size as u32,
                    in_channels: c.in_channels as u32,
                    num_classes: c.num_classes as u32,
                    patch: c.patch as u32,
                    hidden: c.hidden as u32,
                    depth: c.depth as u32,
                    heads: c.heads as u32,
                    mlp_hidden: c.mlp_hidden() as u32,
                    tokens: c.tokens() as u32,
                    image_len: c.image_len() as u64,
                    param_count: m.layout().total() as u64,
                    ..Default::default()
                }
            }
            AnyNetwork::Edm2(e) => {
                let c = e.config();
                ucgm_model_info {
                    arch: UCGM_ARCH_EDM2,
                    input_size: c.input_size as u32,
                    in_channels: c.in_channels as u32,
                    num_classes: c.num_classes as u32,
                    patch: 1,
                    hidden: c.model_channels as u32,
                    depth: c.num_blocks as u32,
                    heads: 0,
                    mlp_hidden: 0,
                    tokens: (c.input_size * c.input_size) as u32,
                    image_len: c.image_len() as u64,
                    param_count: c.parameter_count() as u64,
                    ..Default::default()
                }
            }
        };
        let v = ucgm_model_info {
            struct_size: 0,
            backend,
            threads,
            cuda_device,
            tf32,
            bf16,
            backend_description: fixed_text(&s.backend_summary),
            bytes_held: s.model.held_bytes() as u64,
            ..shape
        };
        params::write_out(info, v)
    })
}

/// Sets (or with NULL clears) the handle's log callback.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_set_log_callback(model: *mut ucgm_model, callback: ucgm_log_callback, user_data: *mut c_void) -> ucgm_status {
    super::set_log("ucgm_model_set_log_callback", model, callback, user_data)
}

/// Sets (or with NULL clears) the handle's progress callback, called after every
/// sampling step.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_set_progress_callback(model: *mut ucgm_model, callback: ucgm_progress_callback, user_data: *mut c_void) -> ucgm_status {
    super::set_progress("ucgm_model_set_progress_callback", model, callback, user_data)
}

/// Asks the sampling call running on `model` to stop at its next step; it then fails
/// with `UCGM_STATUS_CANCELLED` and the handle stays usable. Callable from any thread at
/// any time. The flag is cleared when the next sampling call starts, so a cancel made
/// while no call runs has no effect.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_cancel(model: *mut ucgm_model) -> ucgm_status {
    super::cancel("ucgm_model_cancel", model)
}

/// One raw network evaluation F(x, t, y) in the network's native time.
/// * `x` — `[batch, C, H, W]` input;
/// * `t` — `[batch]` times (finite);
/// * `labels` — `[batch]` classes in 0..=K (K = `num_classes` = the null class);
/// * `out` — `[batch, C, H, W]` output; `out_len` must be batch·C·H·W.
#[no_mangle]
pub unsafe extern "C" fn ucgm_forward(
    model: *mut ucgm_model,
    x: *const f32,
    t: *const f32,
    labels: *const i32,
    batch: usize,
    out: *mut f32,
    out_len: usize,
) -> ucgm_status {
    with_handle("ucgm_forward", model, |s, _| {
        if batch == 0 {
            return Err(Error::invalid("batch must be at least 1"));
        }
        let n = params::elements("x", &[batch, s.model.image_len()])?;
        params::check_buffer_len("out", out_len, n)?;
        let labels = params::labels_arg("labels", labels, batch, s.model.num_classes(), "K = the null class")?;
        let t = params::finite_slice("t", t, batch)?;
        let x = params::finite_slice("x", x, n)?;
        let out = params::slice_mut("out", out, out_len)?;
        s.model.forward(x, t, &labels, out)
    })
}

/// Copies the flat parameter vector (`param_count` values, in the model's layout order:
/// the order of the tensors in a saved file) into `out`; `out_len` = `param_count`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_read_params(model: *mut ucgm_model, out: *mut f32, out_len: usize) -> ucgm_status {
    with_handle("ucgm_model_read_params", model, |s, _| {
        let m = s.model.dit("ucgm_model_read_params")?;
        params::check_buffer_len("out", out_len, m.layout().total())?;
        let out = params::slice_mut("out", out, out_len)?;
        out.copy_from_slice(&m.read_params()?);
        Ok(())
    })
}

/// Overwrites the parameters with `len` = `param_count` finite values in the order of
/// `ucgm_model_read_params`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_write_params(model: *mut ucgm_model, values: *const f32, len: usize) -> ucgm_status {
    with_handle("ucgm_model_write_params", model, |s, _| {
        let m = s.model.dit_mut("ucgm_model_write_params")?;
        params::check_buffer_len("values", len, m.layout().total())?;
        let values = params::finite_slice("values", values, len)?;
        m.write_params(values)
    })
}
