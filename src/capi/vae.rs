//! The VAE handle (`ucgm_vae`): a latent autoencoder (SD-VAE, VA-VAE, E2E-VAE or any
//! AutoencoderKL its weights imply) loaded from safetensors on the backend chosen when
//! the handle is made; info, encode (images → posterior mean / log-variance) and decode
//! (raw latents → images), with cancel and progress like the model handle.

use std::ffi::{c_char, c_void};
use std::mem::size_of;

use super::model::{backend_fields, fixed_text, ucgm_model_params, UCGM_BACKEND_DESCRIPTION_LEN};
use super::params::{self, Versioned};
use super::{
    call, ucgm_backend, ucgm_log_callback, ucgm_progress_callback, ucgm_status, with_handle, with_handle_cancellable, AsHandle, Handle, HasHooks, Hooks,
    UCGM_LOG_INFO,
};
use crate::control::RunControl;
use crate::engine::AnyVae;
use crate::error::{Error, Result};

/// What `ucgm_vae_get_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ucgm_vae_info {
    /// Set by the caller to `sizeof(ucgm_vae_info)`.
    pub struct_size: usize,
    /// Latent channels z (4 for SD-VAE, 32 for VA-VAE / E2E-VAE).
    pub latent_channels: u32,
    /// Spatial downsampling factor f: an h×w image has an (h/f)×(w/f) latent.
    pub downsample_factor: u32,
    /// Image channels the encoder takes (3 for RGB).
    pub in_channels: u32,
    /// Image channels the decoder gives (3 for RGB).
    pub out_channels: u32,
    /// Bytes the handle holds: the weights plus the activation workspace kept from the
    /// last encode or decode for the next call (0 before the first).
    pub bytes_held: u64,
    /// The backend in use: `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA` (never AUTO).
    pub backend: ucgm_backend,
    /// Worker threads of the VAE's CPU pool (0 on CUDA).
    pub threads: u32,
    /// The CUDA device in use, or -1 on the CPU.
    pub cuda_device: i32,
    /// NUL-terminated UTF-8: the backend in use and, when `UCGM_BACKEND_AUTO` chose the
    /// CPU, why CUDA was not used (as `ucgm_model_info.backend_description`).
    pub backend_description: [c_char; UCGM_BACKEND_DESCRIPTION_LEN],
}

impl Default for ucgm_vae_info {
    fn default() -> Self {
        ucgm_vae_info {
            struct_size: 0,
            latent_channels: 0,
            downsample_factor: 0,
            in_channels: 0,
            out_channels: 0,
            bytes_held: 0,
            backend: 0,
            threads: 0,
            cuda_device: -1,
            backend_description: [0; UCGM_BACKEND_DESCRIPTION_LEN],
        }
    }
}

unsafe impl Versioned for ucgm_vae_info {
    const OUTPUT: bool = true;
    const NAME: &'static str = "ucgm_vae_info";
    const SIZES: &'static [usize] = &[size_of::<ucgm_vae_info>()];
    fn defaults() -> Self {
        ucgm_vae_info {
            struct_size: size_of::<Self>(),
            ..Default::default()
        }
    }
}

/// The state behind a VAE handle.
pub(crate) struct VaeState {
    pub vae: AnyVae,
    pub hooks: Hooks,
    /// The backend in use and, when `auto` chose the CPU, why (`Selection::summary`).
    pub backend_summary: String,
}

impl HasHooks for VaeState {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn hooks_mut(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

/// Opaque VAE handle: load with `ucgm_vae_load`, release with `ucgm_vae_free`.
pub struct ucgm_vae {
    handle: Handle<VaeState>,
}

impl AsHandle for ucgm_vae {
    type State = VaeState;
    const NAME: &'static str = "vae";
    fn handle(&self) -> &Handle<VaeState> {
        &self.handle
    }
}

fn describe(v: &AnyVae, backend_summary: &str) -> String {
    let c = v.config();
    format!(
        "VAE ({:?} names) {} → {} latent channels, downsampling ×{}, levels {:?}, {} bytes of weights, on {backend_summary}",
        v.naming(),
        c.in_channels,
        c.latent_channels,
        c.downsample_factor(),
        c.block_channels,
        v.weight_bytes(),
    )
}

/// Loads a safetensors autoencoder in diffusers, pre-0.14 diffusers or LDM/taming names
/// (SD-VAE, VA-VAE, E2E-VAE, any configuration its weights imply) and stores the handle
/// in `*out` (NULL on failure). `params` may be NULL (defaults); only the backend fields
/// (`backend`, `threads`, `cuda_device`, `tf32`, `bf16`) and the log callback are read.
/// Fails with `UCGM_STATUS_IO` (missing/unreadable), `UCGM_STATUS_FORMAT` (truncated,
/// corrupt, or not an autoencoder's file, e.g. a diffusion model's weights),
/// `UCGM_STATUS_WEIGHTS` (an autoencoder's tensors missing or mis-shaped) or
/// `UCGM_STATUS_OUT_OF_MEMORY`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_load(path: *const c_char, params: *const ucgm_model_params, out: *mut *mut ucgm_vae) -> ucgm_status {
    call("ucgm_vae_load", || {
        let super::load::LoadArgs {
            out, path, hooks, selection, ..
        } = super::load::load_args(out, path, params)?;
        let summary = selection.summary();
        let vae = AnyVae::load(&path, selection.backend)?;
        hooks.log(UCGM_LOG_INFO, || format!("loaded {}: {}", path.display(), describe(&vae, &summary)));
        let state = VaeState {
            vae,
            hooks,
            backend_summary: summary,
        };
        *out = Box::into_raw(Box::new(ucgm_vae { handle: Handle::new(state) }));
        Ok(())
    })
}

/// Releases a VAE handle. NULL is a no-op. No call may be running on the handle.
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_free(vae: *mut ucgm_vae) {
    if vae.is_null() {
        return;
    }
    call("ucgm_vae_free", || {
        drop(Box::from_raw(vae));
        Ok(())
    });
}

/// Fills `info` (set `info->struct_size = sizeof *info` first).
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_get_info(vae: *mut ucgm_vae, info: *mut ucgm_vae_info) -> ucgm_status {
    with_handle("ucgm_vae_get_info", vae, |s, _| {
        let c = s.vae.config();
        let (backend, threads, cuda_device, _, _) = backend_fields(&s.vae.backend());
        let v = ucgm_vae_info {
            struct_size: 0,
            latent_channels: c.latent_channels as u32,
            downsample_factor: c.downsample_factor() as u32,
            in_channels: c.in_channels as u32,
            out_channels: c.out_channels as u32,
            bytes_held: (s.vae.weight_bytes() + s.vae.workspace_bytes()) as u64,
            backend,
            threads,
            cuda_device,
            backend_description: fixed_text(&s.backend_summary),
        };
        params::write_out(info, v)
    })
}

/// Sets (or with NULL clears) the handle's log callback.
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_set_log_callback(vae: *mut ucgm_vae, callback: ucgm_log_callback, user_data: *mut c_void) -> ucgm_status {
    super::set_log("ucgm_vae_set_log_callback", vae, callback, user_data)
}

/// Sets (or with NULL clears) the handle's progress callback, called after every chunk
/// of images an encode or decode call finishes (done, total = images).
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_set_progress_callback(vae: *mut ucgm_vae, callback: ucgm_progress_callback, user_data: *mut c_void) -> ucgm_status {
    super::set_progress("ucgm_vae_set_progress_callback", vae, callback, user_data)
}

/// Asks the encode or decode call running on `vae` to stop at its next chunk of images;
/// it then fails with `UCGM_STATUS_CANCELLED` and the handle stays usable. Callable from
/// any thread at any time. The flag is cleared when the next encode or decode call
/// starts, so a cancel made while no call runs has no effect.
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_cancel(vae: *mut ucgm_vae) -> ucgm_status {
    super::cancel("ucgm_vae_cancel", vae)
}

/// Encodes images into the posterior of the latent.
/// * `images` — `[n, in_channels, h, w]` in [−1, 1] (finite); h and w multiples of the
///   downsampling factor f;
/// * `out_mean` — `[n, z, h/f, w/f]` posterior mean; `out_mean_len` = n·z·(h/f)·(w/f);
/// * `out_logvar` — NULL, or `[n, z, h/f, w/f]` log-variance clamped to [−30, 20];
///   `out_logvar_len` as `out_mean_len` (ignored when `out_logvar` is NULL).
///
/// The mean is the raw latent: a diffusion model trained on normalised latents wants
/// them normalised (SD-VAE: ×0.18215; VA-VAE: per-channel statistics) first.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ucgm_vae_encode(
    vae: *mut ucgm_vae,
    images: *const f32,
    n: usize,
    h: usize,
    w: usize,
    out_mean: *mut f32,
    out_mean_len: usize,
    out_logvar: *mut f32,
    out_logvar_len: usize,
) -> ucgm_status {
    with_handle_cancellable("ucgm_vae_encode", vae, |s, cancel| {
        let c = s.vae.config().clone();
        let f = c.downsample_factor();
        if n == 0 {
            return Err(Error::invalid("n must be at least 1"));
        }
        if h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(Error::invalid(format!(
                "image {h}×{w}: height and width must be positive multiples of the downsampling factor {f}"
            )));
        }
        let in_len = params::elements("images", &[n, c.in_channels, h, w])?;
        let lat_len = params::elements("latents", &[n, c.latent_channels, h / f, w / f])?;
        params::check_buffer_len("out_mean", out_mean_len, lat_len)?;
        if !out_logvar.is_null() {
            params::check_buffer_len("out_logvar", out_logvar_len, lat_len)?;
        }
        let images = params::finite_slice("images", images, in_len)?;
        let out_mean = params::slice_mut("out_mean", out_mean, out_mean_len)?;
        let out_logvar = if out_logvar.is_null() {
            None
        } else {
            Some(params::slice_mut("out_logvar", out_logvar, out_logvar_len)?)
        };
        let post = s.hooks.with_control(cancel, |ctl| s.vae.encode_with(images, n, h, w, ctl))?;
        out_mean.copy_from_slice(&post.mean);
        if let Some(lv) = out_logvar {
            lv.copy_from_slice(&post.logvar);
        }
        Ok(())
    })
}

/// Decodes raw latents (the normalisation of a diffusion model's latents already
/// inverted) into images.
/// * `latents` — `[n, z, h, w]` (finite);
/// * `out` — `[n, out_channels, h·f, w·f]`, nominally in [−1, 1], not clamped; `out_len`
///   = n·out_channels·h·f·w·f.
#[no_mangle]
pub unsafe extern "C" fn ucgm_vae_decode(vae: *mut ucgm_vae, latents: *const f32, n: usize, h: usize, w: usize, out: *mut f32, out_len: usize) -> ucgm_status {
    with_handle_cancellable("ucgm_vae_decode", vae, |s, cancel| {
        s.hooks.with_control(cancel, |ctl| decode_into(&mut s.vae, latents, n, h, w, out, out_len, ctl))
    })
}

/// Checks the arguments of a decode and runs it into `out` (shared with the
/// sample-and-decode calls).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn decode_into(
    vae: &mut AnyVae,
    latents: *const f32, // [n, z, h, w]
    n: usize,
    h: usize,
    w: usize,
    out: *mut f32, // [n, out_channels, h·f, w·f]
    out_len: usize,
    ctl: &mut RunControl<'_>,
) -> Result<()> {
    let c = vae.config().clone();
    let f = c.downsample_factor();
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::invalid(format!("n = {n}, h = {h}, w = {w}: each must be at least 1")));
    }
    let lat_len = params::elements("latents", &[n, c.latent_channels, h, w])?;
    let img_len = params::elements("out", &[n, c.out_channels, h, f, w, f])?;
    params::check_buffer_len("out", out_len, img_len)?;
    let latents = params::finite_slice("latents", latents, lat_len)?;
    let out = params::slice_mut("out", out, out_len)?;
    let img = vae.decode_with(latents, n, h, w, ctl)?;
    out.copy_from_slice(&img);
    Ok(())
}
