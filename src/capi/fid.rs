//! FID and Inception Score through the C ABI:
//! * the Inception handle (`ucgm_inception`): the FID Inception-v3 (pytorch-fid's, or
//!   torch-fidelity's `inception-v3-compat` preprocessing) loaded from a converted
//!   `pt_inception-2015-12-05` safetensors file; pool3 features and logits of a batch;
//! * the statistics handle (`ucgm_fid_stats`): streaming mean and covariance of feature
//!   vectors in float64, or statistics read from a `.npz` (`mu`, `sigma`; pytorch-fid and
//!   ADM format), written back as `.npz`;
//! * `ucgm_fid_distance` (the Fréchet distance of two statistics handles) and
//!   `ucgm_inception_score` (10 contiguous splits is the usual setting).

use std::ffi::{c_char, c_void};
use std::ptr;

use super::model::ucgm_model_params;
use super::params;
use super::{call, ucgm_log_callback, ucgm_status, with_handle, AsHandle, Handle, HasHooks, Hooks, UCGM_LOG_INFO};
use crate::engine::AnyInception;
use crate::error::{Error, Result};
use crate::fid::{frechet_distance, inception_score, read_stats_npz, write_stats_npz, FeatureStats};
use crate::metric::GaussianStats;
use crate::model::inception::{InceptionInput, LOGITS_DIM, POOL3_DIM};

/// Inception preprocessing mode (`int32_t`).
pub type ucgm_inception_mode = i32;
/// pytorch-fid: images in [0, 1] as given, PyTorch bilinear resize to 299×299, `2x − 1`.
pub const UCGM_INCEPTION_PYTORCH_FID: ucgm_inception_mode = 0;
/// torch-fidelity `inception-v3-compat` (the UCGM reference's `eval.py`): images in
/// [0, 1] are first quantised to the uint8 values `trunc(255·x)` (the reference's
/// `x * 255 → uint8` cast), then TensorFlow-1 bilinear resize, `(v − 128)/128`.
pub const UCGM_INCEPTION_TORCH_FIDELITY: ucgm_inception_mode = 1;

/// pool3 feature dimension (`out_pool3` holds n rows of it).
pub const UCGM_INCEPTION_POOL3_DIM: u32 = 2048;
/// Logit classes (`out_logits` holds n rows of it).
pub const UCGM_INCEPTION_LOGITS_DIM: u32 = 1008;

const _: () = assert!(UCGM_INCEPTION_POOL3_DIM as usize == POOL3_DIM && UCGM_INCEPTION_LOGITS_DIM as usize == LOGITS_DIM);

/// Largest feature dimension of a statistics handle (its covariance then takes 8 GiB).
pub const UCGM_FID_STATS_MAX_DIM: u32 = 32768;

const _: () = assert!(UCGM_FID_STATS_MAX_DIM as usize == crate::fid::npz::MAX_STATS_DIM);

/// The state behind an Inception handle.
pub(crate) struct InceptionState {
    net: AnyInception,
    hooks: Hooks,
}

impl HasHooks for InceptionState {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn hooks_mut(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

/// Opaque FID Inception handle: load with `ucgm_inception_load`, release with
/// `ucgm_inception_free`.
pub struct ucgm_inception {
    handle: Handle<InceptionState>,
}

impl AsHandle for ucgm_inception {
    type State = InceptionState;
    const NAME: &'static str = "inception";
    fn handle(&self) -> &Handle<InceptionState> {
        &self.handle
    }
}

/// Loads the FID Inception from a safetensors file converted from pytorch-fid's
/// `pt_inception-2015-12-05-6726825d.pth` by `scripts/convert_inception.py` (BatchNorm
/// is folded into the convolutions here) and stores the handle in `*out` (NULL on
/// failure). `params` may be NULL (defaults); only its backend fields and log callback
/// are read. `mode` is a `UCGM_INCEPTION_*` value. Fails with `UCGM_STATUS_IO`,
/// `UCGM_STATUS_FORMAT` (not a safetensors file) or `UCGM_STATUS_WEIGHTS` (tensors
/// missing, mis-shaped or not finite: not an FID Inception file).
#[no_mangle]
pub unsafe extern "C" fn ucgm_inception_load(
    path: *const c_char,
    params: *const ucgm_model_params,
    mode: ucgm_inception_mode,
    out: *mut *mut ucgm_inception,
) -> ucgm_status {
    call("ucgm_inception_load", || {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        let path = params::path_arg("path", path)?;
        let input = params::enum_arg(
            "mode",
            mode,
            &[
                (UCGM_INCEPTION_PYTORCH_FID, "UCGM_INCEPTION_PYTORCH_FID", InceptionInput::PytorchFid),
                (UCGM_INCEPTION_TORCH_FIDELITY, "UCGM_INCEPTION_TORCH_FIDELITY", InceptionInput::TorchFidelity),
            ],
        )?;
        let (_, hooks, selection) = super::load::backend_and_hooks(params)?;
        let summary = selection.summary();
        let net = AnyInception::load(&path, selection.backend, input)?;
        hooks.log(UCGM_LOG_INFO, || {
            format!("loaded the FID Inception {} ({input:?} input) on {summary}", path.display())
        });
        *out = Box::into_raw(Box::new(ucgm_inception {
            handle: Handle::new(InceptionState { net, hooks }),
        }));
        Ok(())
    })
}

/// Releases an Inception handle. NULL is a no-op. No call may be running on the handle.
#[no_mangle]
pub unsafe extern "C" fn ucgm_inception_free(net: *mut ucgm_inception) {
    if net.is_null() {
        return;
    }
    call("ucgm_inception_free", || {
        drop(Box::from_raw(net));
        Ok(())
    });
}

/// Sets (or with NULL clears) the handle's log callback.
#[no_mangle]
pub unsafe extern "C" fn ucgm_inception_set_log_callback(net: *mut ucgm_inception, callback: ucgm_log_callback, user_data: *mut c_void) -> ucgm_status {
    super::set_log("ucgm_inception_set_log_callback", net, callback, user_data)
}

/// pool3 features and logits of a batch of images.
/// * `images` — `[n, 3, h, w]` RGB in [0, 1] (any size; resized to 299×299 inside);
///   values outside [0, 1] or not finite are `UCGM_STATUS_INVALID_ARGUMENT` /
///   `UCGM_STATUS_NON_FINITE`;
/// * `out_pool3` — `[n, 2048]`; `out_pool3_len` = n·2048;
/// * `out_logits` — NULL, or `[n, 1008]`: the `fc` logits without its bias
///   (torch-fidelity's `logits_unbiased`, which its Inception Score and
///   `ucgm_inception_score` take); `out_logits_len` = n·1008 (ignored when NULL).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ucgm_inception_features(
    net: *mut ucgm_inception,
    images: *const f32,
    n: usize,
    h: usize,
    w: usize,
    out_pool3: *mut f32,
    out_pool3_len: usize,
    out_logits: *mut f32,
    out_logits_len: usize,
) -> ucgm_status {
    with_handle("ucgm_inception_features", net, |s, _| {
        if n == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!("n = {n}, h = {h}, w = {w}: each must be at least 1")));
        }
        let in_len = params::elements("images", &[n, 3, h, w])?;
        params::check_buffer_len("out_pool3", out_pool3_len, params::elements("out_pool3", &[n, POOL3_DIM])?)?;
        if !out_logits.is_null() {
            params::check_buffer_len("out_logits", out_logits_len, params::elements("out_logits", &[n, LOGITS_DIM])?)?;
        }
        let images = params::finite_slice("images", images, in_len)?;
        if let Some(i) = images.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::invalid(format!("images[{i}] = {} is outside [0, 1]", images[i])));
        }
        let out_pool3 = params::slice_mut("out_pool3", out_pool3, out_pool3_len)?;
        let out_logits = if out_logits.is_null() {
            None
        } else {
            Some(params::slice_mut("out_logits", out_logits, out_logits_len)?)
        };
        let out = match s.net.input() {
            InceptionInput::PytorchFid => s.net.forward(images, n, h, w)?,
            InceptionInput::TorchFidelity => {
                let mut bytes = crate::limits::try_with_capacity::<f32>("compat images", images.len())?;
                bytes.extend(images.iter().map(|v| (v * 255.0).trunc()));
                s.net.forward(&bytes, n, h, w)?
            }
        };
        out_pool3.copy_from_slice(&out.pool3);
        if let Some(l) = out_logits {
            l.copy_from_slice(&out.logits_unbiased);
        }
        Ok(())
    })
}

/// What a statistics handle holds.
enum StatsKind {
    /// Streaming statistics that take more features.
    Accumulating(FeatureStats),
    /// Finished statistics read from a `.npz`.
    Loaded(GaussianStats),
}

/// The state behind a statistics handle.
pub(crate) struct StatsState {
    kind: StatsKind,
    hooks: Hooks,
}

impl HasHooks for StatsState {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn hooks_mut(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

impl StatsState {
    fn dim(&self) -> usize {
        match &self.kind {
            StatsKind::Accumulating(s) => s.dim(),
            StatsKind::Loaded(g) => g.dim(),
        }
    }

    /// Mean and covariance (streaming statistics need at least 2 vectors).
    fn gaussian(&self) -> Result<GaussianStats> {
        match &self.kind {
            StatsKind::Accumulating(s) => s.finish(),
            StatsKind::Loaded(g) => Ok(g.clone()),
        }
    }
}

/// Opaque feature statistics handle: `ucgm_fid_stats_new` (empty, takes features) or
/// `ucgm_fid_stats_load_npz` (finished); release with `ucgm_fid_stats_free`.
pub struct ucgm_fid_stats {
    handle: Handle<StatsState>,
}

impl AsHandle for ucgm_fid_stats {
    type State = StatsState;
    const NAME: &'static str = "fid_stats";
    fn handle(&self) -> &Handle<StatsState> {
        &self.handle
    }
}

fn publish_stats(out: &mut *mut ucgm_fid_stats, kind: StatsKind) {
    *out = Box::into_raw(Box::new(ucgm_fid_stats {
        handle: Handle::new(StatsState { kind, hooks: Hooks::default() }),
    }));
}

/// Makes empty streaming statistics of `dim`-vectors (1 ≤ dim ≤
/// `UCGM_FID_STATS_MAX_DIM`; 2048 for pool3) in `*out`: float64 mean and scatter,
/// memory `dim² · 8` bytes whatever the number of vectors added.
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_new(dim: usize, out: *mut *mut ucgm_fid_stats) -> ucgm_status {
    call("ucgm_fid_stats_new", || {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        if dim == 0 || dim > UCGM_FID_STATS_MAX_DIM as usize {
            return Err(Error::invalid(format!("dim {dim}: expected 1..={UCGM_FID_STATS_MAX_DIM}")));
        }
        publish_stats(out, StatsKind::Accumulating(FeatureStats::new(dim)?));
        Ok(())
    })
}

/// Reads statistics (`mu` `[D]`, `sigma` `[D, D]`, float32 or float64) from a `.npz`
/// as pytorch-fid writes them and ADM ships them, into a new handle in `*out`. Such a
/// handle takes no more features. Fails with `UCGM_STATUS_IO` or `UCGM_STATUS_FORMAT`
/// (not a zip, arrays missing, wrong shapes, non-finite or asymmetric sigma).
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_load_npz(path: *const c_char, out: *mut *mut ucgm_fid_stats) -> ucgm_status {
    call("ucgm_fid_stats_load_npz", || {
        let out = params::out_ref("out", out)?;
        *out = ptr::null_mut();
        let path = params::path_arg("path", path)?;
        publish_stats(out, StatsKind::Loaded(read_stats_npz(&path)?));
        Ok(())
    })
}

/// Releases a statistics handle. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_free(stats: *mut ucgm_fid_stats) {
    if stats.is_null() {
        return;
    }
    call("ucgm_fid_stats_free", || {
        drop(Box::from_raw(stats));
        Ok(())
    });
}

/// Adds `n` feature vectors `features` `[n, dim]` (finite). A non-finite value leaves
/// the statistics unchanged and fails with `UCGM_STATUS_NON_FINITE`; a handle read from
/// a `.npz` fails with `UCGM_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_add(stats: *mut ucgm_fid_stats, features: *const f32, n: usize) -> ucgm_status {
    with_handle("ucgm_fid_stats_add", stats, |s, _| {
        let StatsKind::Accumulating(acc) = &mut s.kind else {
            return Err(Error::invalid("statistics read from a .npz take no more features"));
        };
        let len = params::elements("features", &[n, acc.dim()])?;
        let f = params::finite_slice("features", features, len)?;
        acc.add_f32(f)
    })
}

/// Adds `n` float64 feature vectors `features` `[n, dim]` (finite), as
/// `ucgm_fid_stats_add` (for features kept in double precision).
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_add_f64(stats: *mut ucgm_fid_stats, features: *const f64, n: usize) -> ucgm_status {
    with_handle("ucgm_fid_stats_add_f64", stats, |s, _| {
        let StatsKind::Accumulating(acc) = &mut s.kind else {
            return Err(Error::invalid("statistics read from a .npz take no more features"));
        };
        let len = params::elements("features", &[n, acc.dim()])?;
        acc.add_f64(params::slice("features", features, len)?)
    })
}

/// Stores the number of vectors added in `*out_count` (0 for a handle read from a `.npz`,
/// whose count is not recorded) and the dimension in `*out_dim`; either may be NULL.
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_get_count(stats: *mut ucgm_fid_stats, out_count: *mut u64, out_dim: *mut u64) -> ucgm_status {
    with_handle("ucgm_fid_stats_get_count", stats, |s, _| {
        if !out_count.is_null() {
            *out_count = match &s.kind {
                StatsKind::Accumulating(a) => a.count(),
                StatsKind::Loaded(_) => 0,
            };
        }
        if !out_dim.is_null() {
            *out_dim = s.dim() as u64;
        }
        Ok(())
    })
}

/// Writes the mean and unbiased covariance as a `.npz` (`mu`, `sigma`, float64, as
/// `np.savez`), atomically. Streaming statistics need at least 2 vectors.
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_stats_save_npz(stats: *mut ucgm_fid_stats, path: *const c_char) -> ucgm_status {
    with_handle("ucgm_fid_stats_save_npz", stats, |s, _| {
        let path = params::path_arg("path", path)?;
        write_stats_npz(&path, &s.gaussian()?)
    })
}

/// The Fréchet distance between the Gaussians of two statistics handles (the same
/// dimension; streaming ones with at least 2 vectors) in `*out` — the FID when both
/// hold pool3 statistics. `a` and `b` may be the same handle.
#[no_mangle]
pub unsafe extern "C" fn ucgm_fid_distance(a: *mut ucgm_fid_stats, b: *mut ucgm_fid_stats, out: *mut f64) -> ucgm_status {
    // Each handle is locked on its own (one after the other), so a == b works.
    let mut ga = None;
    let st = with_handle("ucgm_fid_distance", a, |s, _| {
        ga = Some(s.gaussian()?);
        Ok(())
    });
    if st != super::UCGM_STATUS_OK {
        return st;
    }
    with_handle("ucgm_fid_distance", b, |s, _| {
        let out = params::out_ref("out", out)?;
        let ga = ga.take().expect("set above");
        *out = frechet_distance(&ga, &s.gaussian()?)?;
        Ok(())
    })
}

/// The Inception Score of `logits` `[n, 1008]` (finite; `ucgm_inception_features`'
/// `out_logits`) in `splits` contiguous splits (1 ≤ splits ≤ n; the field uses 10):
/// the mean and the population standard deviation of the split scores.
#[no_mangle]
pub unsafe extern "C" fn ucgm_inception_score(logits: *const f32, n: usize, splits: usize, out_mean: *mut f64, out_std: *mut f64) -> ucgm_status {
    call("ucgm_inception_score", || {
        let out_mean = params::out_ref("out_mean", out_mean)?;
        let out_std = params::out_ref("out_std", out_std)?;
        if n == 0 || splits == 0 || splits > n {
            return Err(Error::invalid(format!("n = {n}, splits = {splits}: need 1 ≤ splits ≤ n")));
        }
        let len = params::elements("logits", &[n, LOGITS_DIM])?;
        let l = params::finite_slice("logits", logits, len)?;
        let s = inception_score(l, LOGITS_DIM, splits)?;
        *out_mean = s.mean;
        *out_std = s.std;
        Ok(())
    })
}
