//! UCGM-S through a model handle: `ucgm_sample` (defaults) and `ucgm_sample_ext` (every
//! setting of the unified sampler, caller-provided noise, labels and trajectory).
//!
//! Random draws, when the caller does not provide them, come from one stream seeded by
//! `seed`, in this order: the initial noise z (`batch·C·H·W` normals), then the labels
//! (one uniform per sample, class ⌊u·K⌋), then one noise tensor per stochastic step.

use std::ptr;
use std::time::Instant;

use super::model::{ucgm_model, ModelState};
use super::params::{self, Versioned};
use super::{call, ucgm_status, with_handle, with_handle_cancellable, UCGM_LOG_DEBUG, UCGM_LOG_INFO};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::sampler::{sample, NoiseSource, SamplerConfig, Stochasticity};
use crate::transport::TransportKind;

/// Transport (`int32_t`): how the network's output is read (spec §1.2).
pub type ucgm_transport = i32;
/// α = t, γ = 1 − t (rectified flow; SiT/REPA; what UCGM trains).
pub const UCGM_TRANSPORT_LINEAR: ucgm_transport = 0;
/// α = 1 − t, γ = t (LightningDiT/DDT; t = 0 is noise).
pub const UCGM_TRANSPORT_RELINEAR: ucgm_transport = 1;
/// sCM's TrigFlow.
pub const UCGM_TRANSPORT_TRIGFLOW: ucgm_transport = 2;
/// Trigonometric interpolant, linear target.
pub const UCGM_TRANSPORT_TRIGLINEAR: ucgm_transport = 3;
/// The reference's arbitrary "Random" transport.
pub const UCGM_TRANSPORT_RANDOM: ucgm_transport = 4;
/// EDM preconditioning.
pub const UCGM_TRANSPORT_EDM: ucgm_transport = 5;

/// How ρ (fresh noise per step) is chosen (`int32_t`).
pub type ucgm_stochasticity = i32;
/// Use `ucgm_sample_params.rho` for every step.
pub const UCGM_STOCHASTICITY_FIXED: ucgm_stochasticity = 0;
/// The reference's adaptive "SDE" ρ, computed at the first step and then kept.
pub const UCGM_STOCHASTICITY_SDE: ucgm_stochasticity = 1;

pub(crate) const TRANSPORTS: [(i32, &str, TransportKind); 6] = [
    (UCGM_TRANSPORT_LINEAR, "UCGM_TRANSPORT_LINEAR", TransportKind::Linear),
    (UCGM_TRANSPORT_RELINEAR, "UCGM_TRANSPORT_RELINEAR", TransportKind::ReLinear),
    (UCGM_TRANSPORT_TRIGFLOW, "UCGM_TRANSPORT_TRIGFLOW", TransportKind::TrigFlow),
    (UCGM_TRANSPORT_TRIGLINEAR, "UCGM_TRANSPORT_TRIGLINEAR", TransportKind::TrigLinear),
    (UCGM_TRANSPORT_RANDOM, "UCGM_TRANSPORT_RANDOM", TransportKind::Random),
    (UCGM_TRANSPORT_EDM, "UCGM_TRANSPORT_EDM", TransportKind::Edm),
];

const STOCHASTICITY: [(i32, &str, bool); 2] = [
    (UCGM_STOCHASTICITY_FIXED, "UCGM_STOCHASTICITY_FIXED", false),
    (UCGM_STOCHASTICITY_SDE, "UCGM_STOCHASTICITY_SDE", true),
];

/// Every UCGM-S setting. Fill with `ucgm_sample_params_default`; the defaults are the
/// reference's v2 defaults (Linear, 35 steps, order 1, ρ = 0, κ = 0, no time warp, no
/// gaps, no guidance), batch 1, seed 0, random labels, noise from the seed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_sample_params {
    /// `sizeof(ucgm_sample_params)`, set by `ucgm_sample_params_default`.
    pub struct_size: usize,
    /// A `UCGM_TRANSPORT_*` value matching how the network was trained.
    pub transport: ucgm_transport,
    /// Requested steps N ≥ 1 (order 2 uses ⌊(N + 1)/2⌋ grid points).
    pub steps: u32,
    /// 1 = Euler / DDIM-like, 2 = Heun-like.
    pub order: u32,
    /// `UCGM_STOCHASTICITY_FIXED` (use `rho`) or `UCGM_STOCHASTICITY_SDE`.
    pub stochasticity: ucgm_stochasticity,
    /// ρ ∈ [0, 1]: 0 = deterministic, 1 = consistency-model multistep sampling.
    pub rho: f64,
    /// Extrapolation κ ≥ 0 (0.2–0.6 for multi-step models).
    pub extrapolation: f64,
    /// Kumaraswamy time warp [a, b, c], each > 0 ([1, 1, 1] = none; [1.17, 0.8, 1.1] recommended).
    pub time_dist_ctrl: [f64; 3],
    /// Grid gaps [g0, g1] at the noise and data ends.
    pub rfba_gap_steps: [f64; 2],
    /// Classifier-free guidance scale (0 = off). A `UCGM_ARCH_LIGHTNINGDIT` model guides
    /// output channels 0–2 only (its reference's rule, which its released FIDs were
    /// measured with); every other network guides all channels.
    pub cfg_scale: f64,
    /// Native-time interval [lo, hi] (inclusive) where guidance applies.
    pub cfg_interval: [f64; 2],
    /// Samples per call B ≥ 1.
    pub batch: u32,
    /// Seed of the draws this call makes itself (see the order above).
    pub seed: u64,
    /// `[batch]` classes in 0..=K (K = null class, unconditional), or NULL: random
    /// classes in 0..K-1 from the seed.
    pub labels: *const i32,
    /// `[batch, C, H, W]` initial noise z, or NULL: drawn from the seed.
    pub noise: *const f32,
    /// Elements at `noise` (batch·C·H·W when `noise` is set).
    pub noise_len: usize,
    /// `[S, batch, C, H, W]` per-step noise for stochastic steps (ρ > 0), consumed one
    /// tensor per step, or NULL: drawn from the seed. Too few tensors fail the call.
    pub step_noise: *const f32,
    /// Elements at `step_noise` (a multiple of batch·C·H·W).
    pub step_noise_len: usize,
}

unsafe impl Versioned for ucgm_sample_params {
    const NAME: &'static str = "ucgm_sample_params";
    const SIZES: &'static [usize] = &[std::mem::size_of::<ucgm_sample_params>()];
    fn defaults() -> Self {
        let d = SamplerConfig::default();
        ucgm_sample_params {
            struct_size: std::mem::size_of::<Self>(),
            transport: UCGM_TRANSPORT_LINEAR,
            steps: d.steps as u32,
            order: d.order as u32,
            stochasticity: UCGM_STOCHASTICITY_FIXED,
            rho: 0.0,
            extrapolation: d.extrapolation,
            time_dist_ctrl: d.time_dist_ctrl,
            rfba_gap_steps: d.rfba_gap_steps,
            cfg_scale: d.cfg_scale,
            cfg_interval: d.cfg_interval,
            batch: 1,
            seed: 0,
            labels: ptr::null(),
            noise: ptr::null(),
            noise_len: 0,
            step_noise: ptr::null(),
            step_noise_len: 0,
        }
    }
}

/// What a sampling call reports (optional output of `ucgm_sample_ext`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ucgm_sample_info {
    /// Set by the caller to `sizeof(ucgm_sample_info)`.
    pub struct_size: usize,
    /// Grid points n (the trajectory has n + 1 entries).
    pub grid_points: u32,
    /// Network evaluations (a guided evaluation counts once).
    pub nfe: u32,
    /// How many of them ran the doubled guidance batch.
    pub guided_evals: u32,
    /// Per-step noise tensors consumed (from `step_noise` or the seed).
    pub noise_tensors: u32,
}

unsafe impl Versioned for ucgm_sample_info {
    const OUTPUT: bool = true;
    const NAME: &'static str = "ucgm_sample_info";
    const SIZES: &'static [usize] = &[std::mem::size_of::<ucgm_sample_info>()];
    fn defaults() -> Self {
        ucgm_sample_info {
            struct_size: std::mem::size_of::<Self>(),
            ..Default::default()
        }
    }
}

/// The engine's sampler settings for `p` (every enum and number validated).
fn sampler_config(p: &ucgm_sample_params) -> Result<SamplerConfig> {
    let transport = params::enum_arg("ucgm_sample_params.transport", p.transport, &TRANSPORTS)?;
    let sde = params::enum_arg("ucgm_sample_params.stochasticity", p.stochasticity, &STOCHASTICITY)?;
    let rho = params::finite("ucgm_sample_params.rho", p.rho)?;
    let cfg = SamplerConfig {
        transport,
        steps: p.steps as usize,
        order: p.order as usize,
        stochasticity: if sde { Stochasticity::Sde } else { Stochasticity::Fixed(rho) },
        extrapolation: params::finite("ucgm_sample_params.extrapolation", p.extrapolation)?,
        time_dist_ctrl: params::finite_all("ucgm_sample_params.time_dist_ctrl", p.time_dist_ctrl)?,
        rfba_gap_steps: params::finite_all("ucgm_sample_params.rfba_gap_steps", p.rfba_gap_steps)?,
        cfg_scale: params::finite("ucgm_sample_params.cfg_scale", p.cfg_scale)?,
        cfg_interval: params::finite_all("ucgm_sample_params.cfg_interval", p.cfg_interval)?,
        cfg_channels: None,
        return_trajectory: false,
    };
    cfg.validate()?;
    if p.batch == 0 {
        return Err(Error::invalid("ucgm_sample_params.batch must be at least 1"));
    }
    Ok(cfg)
}

/// Elements of the trajectory `[n + 1, batch, C, H, W]`.
fn trajectory_len(image_len: usize, cfg: &SamplerConfig, batch: usize) -> Result<usize> {
    params::elements("trajectory", &[cfg.grid_points() + 1, batch, image_len])
}

/// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
/// defaults listed at `ucgm_sample_params`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_sample_params_default(params: *mut ucgm_sample_params, struct_size: usize) -> ucgm_status {
    call("ucgm_sample_params_default", || params::write_defaults(params, struct_size))
}

/// Stores in `*len` the elements a trajectory buffer for `params` needs:
/// (n + 1)·batch·C·H·W, n = grid points.
#[no_mangle]
pub unsafe extern "C" fn ucgm_sample_trajectory_len(model: *mut ucgm_model, params: *const ucgm_sample_params, len: *mut usize) -> ucgm_status {
    with_handle("ucgm_sample_trajectory_len", model, |s, _| {
        let len = params::out_ref("len", len)?;
        let p = params::read_params(params)?;
        let cfg = sampler_config(&p)?;
        *len = trajectory_len(s.model.image_len(), &cfg, p.batch as usize)?;
        Ok(())
    })
}

/// The sample params of a model without a preset: the defaults of
/// `ucgm_sample_params_default`, with the EDM transport for an EDM2 UNet (the transport
/// its noise label 2.68·t − 1.59 = ln σ / 4 is made for).
fn network_defaults(s: &ModelState) -> ucgm_sample_params {
    let mut p = ucgm_sample_params::defaults();
    if matches!(s.model, crate::engine::AnyNetwork::Edm2(_)) {
        p.transport = UCGM_TRANSPORT_EDM;
    }
    p
}

/// The sample params of a sampler configuration (batch 1, seed 0, no buffers).
pub(crate) fn params_of(cfg: &SamplerConfig) -> ucgm_sample_params {
    let transport = TRANSPORTS.iter().find(|(_, _, k)| *k == cfg.transport).map_or(UCGM_TRANSPORT_LINEAR, |t| t.0);
    let (stochasticity, rho) = match cfg.stochasticity {
        Stochasticity::Fixed(r) => (UCGM_STOCHASTICITY_FIXED, r),
        Stochasticity::Sde => (UCGM_STOCHASTICITY_SDE, 0.0),
    };
    ucgm_sample_params {
        transport,
        steps: cfg.steps as u32,
        order: cfg.order as u32,
        stochasticity,
        rho,
        extrapolation: cfg.extrapolation,
        time_dist_ctrl: cfg.time_dist_ctrl,
        rfba_gap_steps: cfg.rfba_gap_steps,
        cfg_scale: cfg.cfg_scale,
        cfg_interval: cfg.cfg_interval,
        ..ucgm_sample_params::defaults()
    }
}

/// Samples one image of a random class with the model's sampler preset — the one stored
/// in its file (see `ucgm_model_get_sample_params`), else the defaults of
/// `ucgm_sample_params_default` (with the EDM transport for a `UCGM_ARCH_EDM2` model) —
/// and `steps` steps (0 = the preset's steps; 35 without a preset). The seed is the handle's: each call uses it and then advances it by one,
/// so successive calls give different images and a handle reseeded with
/// `ucgm_model_set_seed` repeats its sequence. `out`: `[1, C, H, W]`, `out_len` = C·H·W.
/// `steps` above `UCGM_MAX_STEPS` fails with `UCGM_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_sample(model: *mut ucgm_model, steps: u32, out: *mut f32, out_len: usize) -> ucgm_status {
    run(
        "ucgm_sample",
        model,
        |s| {
            let mut p = s.preset.as_ref().map_or_else(|| network_defaults(s), params_of);
            if steps != 0 {
                p.steps = steps;
            }
            p.seed = s.seed;
            Ok(p)
        },
        true, // the handle's seed advances per ucgm_sample call
        out,
        out_len,
        ptr::null_mut(),
        0,
        ptr::null_mut(),
    )
}

/// Sets the seed of the next `ucgm_sample` call on this handle (a new handle starts at
/// 0); each `ucgm_sample` call then advances it by one. `ucgm_sample_ext` takes its seed
/// from its params and leaves this one alone.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_set_seed(model: *mut ucgm_model, seed: u64) -> ucgm_status {
    with_handle("ucgm_model_set_seed", model, |s, _| {
        s.seed = seed;
        Ok(())
    })
}

/// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
/// settings this model is meant to be sampled with: its sampler preset (stored in the
/// weights file or checkpoint it was loaded from, or set with
/// `ucgm_model_set_sample_params`), else the defaults of `ucgm_sample_params_default`
/// (with the EDM transport for a `UCGM_ARCH_EDM2` model); `seed` is the handle's next seed, batch 1, no buffers. Stores in `*has_preset` (may be
/// NULL) 1 when the model has a preset, else 0.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_get_sample_params(
    model: *mut ucgm_model,
    params: *mut ucgm_sample_params,
    struct_size: usize,
    has_preset: *mut i32,
) -> ucgm_status {
    with_handle("ucgm_model_get_sample_params", model, |s, _| {
        params::write_defaults(params, struct_size)?;
        let mut p = s.preset.as_ref().map_or_else(|| network_defaults(s), params_of);
        p.seed = s.seed;
        params::write_out(params, p)?;
        if !has_preset.is_null() {
            *params::out_ref("has_preset", has_preset)? = i32::from(s.preset.is_some());
        }
        Ok(())
    })
}

/// Sets (or with NULL clears) the model's sampler preset from the sampler settings of
/// `params` (transport, steps, order, stochasticity, ρ, κ, time warp, gaps, guidance; the
/// batch, seed and buffer fields are ignored). `ucgm_sample` then uses it and
/// `ucgm_model_save` stores it in the file.
#[no_mangle]
pub unsafe extern "C" fn ucgm_model_set_sample_params(model: *mut ucgm_model, params: *const ucgm_sample_params) -> ucgm_status {
    with_handle("ucgm_model_set_sample_params", model, |s, _| {
        s.preset = if params.is_null() {
            None
        } else {
            Some(sampler_config(&params::read_params(params)?)?)
        };
        Ok(())
    })
}

/// Samples with every UCGM-S setting.
/// * `out` — `[batch, C, H, W]` samples (the last raw x̂); `out_len` = batch·C·H·W;
/// * `trajectory` — NULL, or `[n + 1, batch, C, H, W]`: entry 0 is z, entry i + 1 the
///   raw x̂ of step i; `trajectory_len` from `ucgm_sample_trajectory_len`;
/// * `info` — NULL, or filled with the evaluation counts.
///
/// Reports progress after every step and stops with `UCGM_STATUS_CANCELLED` when the
/// progress callback returns non-zero or `ucgm_model_cancel` is called.
#[no_mangle]
pub unsafe extern "C" fn ucgm_sample_ext(
    model: *mut ucgm_model,
    params: *const ucgm_sample_params,
    out: *mut f32,
    out_len: usize,
    trajectory: *mut f32,
    trajectory_len: usize,
    info: *mut ucgm_sample_info,
) -> ucgm_status {
    run(
        "ucgm_sample_ext",
        model,
        |_| params::read_params(params),
        false,
        out,
        out_len,
        trajectory,
        trajectory_len,
        info,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn run(
    fname: &str,
    model: *mut ucgm_model,
    params: impl FnOnce(&ModelState) -> Result<ucgm_sample_params>,
    advance_seed: bool,
    out: *mut f32,
    out_len: usize,
    trajectory: *mut f32,
    traj_len: usize,
    info: *mut ucgm_sample_info,
) -> ucgm_status {
    with_handle_cancellable(fname, model, |s, cancel| {
        let p = &params(s)?;
        let mut cfg = sampler_config(p)?;
        let [channels, side, _] = s.model.sample_shape();
        let (image_len, num_classes) = (s.model.image_len(), s.model.num_classes());
        // LightningDiT guides channels 0–2 only, as its reference (and released FIDs) do.
        cfg.cfg_channels = s.model.cfg_channels();
        let batch = p.batch as usize;
        let numel = params::elements("samples", &[batch, image_len])?;
        params::check_buffer_len("out", out_len, numel)?;
        // The sampler's own buffers (noise, f64 state, guidance batch) before any is made.
        crate::limits::check_bytes("sampling buffers", numel, 120)?;
        let out = params::slice_mut("out", out, out_len)?;
        let trajectory = if trajectory.is_null() {
            None
        } else {
            params::check_buffer_len("trajectory", traj_len, trajectory_len(image_len, &cfg, batch)?)?;
            cfg.return_trajectory = true;
            Some(params::slice_mut("trajectory", trajectory, traj_len)?)
        };
        if !info.is_null() {
            params::write_out(info, ucgm_sample_info::defaults())?; // checks struct_size before the work
        }
        let labels = if p.labels.is_null() {
            None
        } else {
            Some(params::labels_arg(
                "ucgm_sample_params.labels",
                p.labels,
                batch,
                num_classes,
                "K = the null class",
            )?)
        };
        let noise = if p.noise.is_null() {
            None
        } else {
            params::check_buffer_len("ucgm_sample_params.noise_len", p.noise_len, numel)?;
            Some(params::finite_slice("ucgm_sample_params.noise", p.noise, p.noise_len)?)
        };
        let step_noise = if p.step_noise.is_null() {
            None
        } else {
            if p.step_noise_len % numel != 0 {
                return Err(Error::invalid(format!(
                    "ucgm_sample_params.step_noise_len = {} is not a multiple of batch·C·H·W = {numel}",
                    p.step_noise_len
                )));
            }
            Some(params::finite_slice("ucgm_sample_params.step_noise", p.step_noise, p.step_noise_len)?)
        };

        let mut rng = Rng::new(p.seed);
        let z = match noise {
            Some(z) => z.to_vec(),
            None => rng.normal_f32(numel),
        };
        let labels = labels.unwrap_or_else(|| {
            (0..batch)
                .map(|_| ((rng.uniform() * num_classes as f64) as usize).min(num_classes.max(1) - 1))
                .collect()
        });
        let mut noise_src = match step_noise {
            Some(s) => NoiseSource::provided(s),
            None => NoiseSource::rng(&mut rng),
        };
        s.hooks.log(UCGM_LOG_DEBUG, || format!("sampling: {cfg:?}, batch {batch}, seed {}", p.seed));
        let start = Instant::now();
        let res = s
            .hooks
            .with_control(cancel, |ctl| sample(&mut s.model, &z, &labels, &cfg, &mut noise_src, ctl))?;
        if advance_seed {
            s.seed = s.seed.wrapping_add(1);
        }
        let drawn = noise_src.tensors_drawn();
        out.copy_from_slice(&res.sample);
        if let (Some(dst), Some(src)) = (trajectory, res.trajectory.as_ref()) {
            dst.copy_from_slice(src);
        }
        if !info.is_null() {
            let v = ucgm_sample_info {
                struct_size: 0,
                grid_points: res.model_times.len() as u32,
                nfe: res.nfe as u32,
                guided_evals: res.guided_evals as u32,
                noise_tensors: drawn as u32,
            };
            params::write_out(info, v)?;
        }
        s.hooks.log(UCGM_LOG_INFO, || {
            format!(
                "sampled {batch} x {}x{}x{} in {} steps ({} network evaluations) in {:.3} s",
                channels,
                side,
                side,
                res.model_times.len(),
                res.nfe,
                start.elapsed().as_secs_f64()
            )
        });
        Ok(())
    })
}

/// Static name of a transport value ("Linear", "ReLinear", "TrigFlow", "TrigLinear",
/// "Random", "EDM"; "unknown" otherwise).
#[no_mangle]
pub extern "C" fn ucgm_transport_name(transport: ucgm_transport) -> *const std::ffi::c_char {
    let name = || match transport {
        UCGM_TRANSPORT_LINEAR => c"Linear",
        UCGM_TRANSPORT_RELINEAR => c"ReLinear",
        UCGM_TRANSPORT_TRIGFLOW => c"TrigFlow",
        UCGM_TRANSPORT_TRIGLINEAR => c"TrigLinear",
        UCGM_TRANSPORT_RANDOM => c"Random",
        UCGM_TRANSPORT_EDM => c"EDM",
        _ => c"unknown",
    };
    super::no_unwind(c"unknown".as_ptr(), || name().as_ptr())
}
