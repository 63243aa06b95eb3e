//! What the calls that make a handle from a file share (`ucgm_model_load`,
//! `ucgm_vae_load`, `ucgm_trainer_resume`, `ucgm_trainer_create_from_checkpoint`): the
//! out-pointer checked and cleared before anything else, the path, the
//! `ucgm_model_params` (NULL = the defaults), the new handle's log callback from them,
//! and the backend they ask for (chosen and logged by [`backend_for`]).

use std::ffi::c_char;
use std::path::PathBuf;
use std::ptr;

use super::model::{backend_for, ucgm_model_params};
use super::params::{self, Versioned};
use super::Hooks;
use crate::engine::Selection;
use crate::error::Result;

/// The params (NULL: the defaults), the hooks of a new handle (the log callback of the
/// params, no progress callback) and the backend the params ask for.
pub(crate) unsafe fn backend_and_hooks(p: *const ucgm_model_params) -> Result<(ucgm_model_params, Hooks, Selection)> {
    let p = if p.is_null() {
        ucgm_model_params::defaults()
    } else {
        params::read_params(p)?
    };
    let hooks = Hooks {
        log: p.log_callback,
        log_user_data: p.log_user_data,
        ..Hooks::default()
    };
    let selection = backend_for(&p, &hooks)?;
    Ok((p, hooks, selection))
}

/// The checked arguments of a load call.
pub(crate) struct LoadArgs<'a, H> {
    /// Where the new handle goes; already NULL, so a failure leaves NULL there.
    pub out: &'a mut *mut H,
    /// The file to read.
    pub path: PathBuf,
    /// The caller's params, or the defaults.
    pub params: ucgm_model_params,
    /// The new handle's callbacks.
    pub hooks: Hooks,
    /// The backend the new handle runs on.
    pub selection: Selection,
}

/// Checks a load call's `out`, `path` and `params`, in this order (`*out` is cleared
/// first), and selects the backend.
pub(crate) unsafe fn load_args<'a, H>(out: *mut *mut H, path: *const c_char, p: *const ucgm_model_params) -> Result<LoadArgs<'a, H>> {
    let out = params::out_ref("out", out)?;
    *out = ptr::null_mut();
    let path = params::path_arg("path", path)?;
    let (params, hooks, selection) = backend_and_hooks(p)?;
    Ok(LoadArgs {
        out,
        path,
        params,
        hooks,
        selection,
    })
}
