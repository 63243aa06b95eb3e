//! The CUDA C sources of every non-GEMM op, the table of their kernels with parameter
//! signatures, and their compilation through NVRTC.
//!
//! The sources (`kernels/*.cu`) are self-contained (no `#include`) and concatenated into
//! one translation unit, compiled once per device architecture to PTX for the virtual
//! architecture `compute_XY` of the device (the driver JIT-compiles it to SASS when the
//! module is loaded) and cached for the life of the process, so every backend on the same
//! kind of device shares one compilation.
//!
//! Every kernel's parameter list is written twice: in the CUDA source and in [`Kernel`]'s
//! signature string here. A unit test parses the sources and checks that the two agree,
//! and every launch checks its argument kinds against the signature before anything is
//! handed to the driver, so a kernel can never receive mis-sized arguments.

use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

/// The whole kernel translation unit.
pub const SOURCE: &str = concat!(
    include_str!("kernels/common.cuh"),
    "\n",
    include_str!("kernels/elementwise.cu"),
    "\n",
    include_str!("kernels/layout.cu"),
    "\n",
    include_str!("kernels/norm.cu"),
    "\n",
    include_str!("kernels/reduce.cu"),
    "\n",
    include_str!("kernels/optim.cu"),
    "\n",
    include_str!("kernels/attention.cu"),
    "\n",
    include_str!("kernels/image.cu"),
);

macro_rules! kernel_table {
    ($($variant:ident = $name:literal : $sig:literal,)*) => {
        /// Every kernel of [`SOURCE`]. The signature string has one letter per parameter:
        /// `P` device pointer (u64), `I` `long long` (i64), `F` `float` (f32), `D` `double` (f64).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kernel {
            $($variant,)*
        }

        impl Kernel {
            /// All kernels, in table order (the index of a kernel is its position here).
            pub const ALL: &'static [Kernel] = &[$(Kernel::$variant,)*];

            /// The kernel's `extern "C"` name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kernel::$variant => $name,)*
                }
            }

            /// The kernel's parameter kinds (see [`Kernel`]).
            pub fn signature(self) -> &'static str {
                match self {
                    $(Kernel::$variant => $sig,)*
                }
            }
        }
    };
}

kernel_table! {
    AddAssign = "add_assign" : "PPI",
    BiasRows = "bias_rows" : "PPII",
    AddRows = "add_rows" : "PPII",
    GeluTanhFwd = "gelu_tanh_fwd" : "PPIFF",
    GeluTanhBwd = "gelu_tanh_bwd" : "PPPIFF",
    SiluFwd = "silu_fwd" : "PPI",
    SiluBwd = "silu_bwd" : "PPPI",
    SwigluFwd = "swiglu_fwd" : "PPII",
    SwigluBwd = "swiglu_bwd" : "PPPII",
    GateResidualFwd = "gate_residual_fwd" : "PPPIIIII",
    GateResidualBwdDy = "gate_residual_bwd_dy" : "PPPIIIII",
    GateResidualBwdAda = "gate_residual_bwd_ada" : "PPPIIIII",
    Patchify = "patchify" : "PPIIII",
    PatchifyBwd = "patchify_bwd" : "PPIIII",
    Unpatchify = "unpatchify" : "PPIIII",
    UnpatchifyBwd = "unpatchify_bwd" : "PPIIII",
    EmbeddingFwd = "embedding_fwd" : "PPPII",
    EmbeddingBwd = "embedding_bwd" : "PPPII",
    NormModFwd = "norm_mod_fwd" : "PPPPPIIIIIII",
    NormModBwdDx = "norm_mod_bwd_dx" : "PPPPPPIIIIIIF",
    NormModBwdAda = "norm_mod_bwd_ada" : "PPPPPIIIIII",
    NormWeightBwd = "norm_weight_bwd" : "PPPPPIIIII",
    QkNormFwd = "qk_norm_fwd" : "PPPIII",
    QkNormBwdDx = "qk_norm_bwd_dx" : "PPPPIIIF",
    QkNormBwdW = "qk_norm_bwd_w" : "PPPPIII",
    MpNormalizeRows = "mp_normalize_rows" : "PPIIF",
    Clamp = "clamp" : "PIF",
    ColsumPartial = "colsum_partial" : "PPIIII",
    ColsumFinish = "colsum_finish" : "PPII",
    SumsqPartial = "sumsq_partial" : "PPII",
    SumFinishD = "sum_finish_d" : "PPI",
    AdamwStep = "adamw_step" : "PPPPIDDDDD",
    RadamStep = "radam_step" : "PPPPIDDDDDDDI",
    Ema = "ema" : "PPID",
    Scale = "scale" : "PID",
    ZeroNonFinite = "zero_non_finite" : "PI",
    AttnPrep = "attn_prep" : "PPPPPIIIIII",
    SoftmaxRows = "softmax_rows" : "PIIF",
    SoftmaxBwdRows = "softmax_bwd_rows" : "PPIIF",
    AttnBwdPost = "attn_bwd_post" : "PPPPPIIIIII",
    F32ToBf16 = "f32_to_bf16" : "PPI",
    AttnPrepBf16 = "attn_prep_bf16" : "PPPPIIIIII",
    SoftmaxRowsBf16 = "softmax_rows_bf16" : "PPIIF",
    Im2col = "im2col" : "PPIIIIIIIIIIIIIII",
    BiasChannels = "bias_channels" : "PPIIIII",
    GroupNormFwd = "group_norm_fwd" : "PPPPIIIIFI",
    UpsampleNearest2x = "upsample_nearest2x" : "PPIII",
    TransposeBatched = "transpose_batched" : "PPIII",
    Pool2d = "pool2d" : "PPIIIIIIIII",
    ResizeBilinear = "resize_bilinear" : "PPIIIIIFFI",
    ReluInplace = "relu_inplace" : "PI",
    ReluPlanes = "relu_planes" : "PIIIII",
    CopyChannels = "copy_channels" : "PPIIIII",
}

/// The loaded module's functions, indexed like [`Kernel::ALL`].
pub struct Kernels {
    funcs: Vec<CudaFunction>,
}

impl Kernels {
    /// Loads (compiling on first use for this architecture) every kernel into `ctx`.
    pub fn load(ctx: &Arc<CudaContext>, arch: &str) -> Result<Self, String> {
        let ptx = compiled(arch)?;
        let module = ctx.load_module(ptx).map_err(|e| format!("loading the kernel module ({arch}): {e}"))?;
        let funcs = Kernel::ALL
            .iter()
            .map(|k| module.load_function(k.name()).map_err(|e| format!("kernel {}: {e}", k.name())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Kernels { funcs })
    }

    /// The function of kernel `k`.
    pub fn get(&self, k: Kernel) -> &CudaFunction {
        &self.funcs[k as usize]
    }
}

/// NVRTC architecture option for a compute capability: the virtual `compute_XY`.
pub fn arch_for(major: i32, minor: i32) -> String {
    format!("compute_{major}{minor}")
}

/// Compiles [`SOURCE`] for `arch` (e.g. `compute_90`), once per process and architecture.
/// Needs only NVRTC, no GPU: a test compiles the kernels on machines without one.
pub fn compiled(arch: &str) -> Result<Ptx, String> {
    // A Vec, not a HashMap: a handful of architectures at most, and a table whose
    // allocation is pointed to from its start (leak checkers then see it as reachable).
    static CACHE: OnceLock<Mutex<Vec<(String, Ptx)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = map.iter().find(|(a, _)| a == arch) {
        return Ok(p.clone());
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("ucgm_kernels.cu".into()),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(SOURCE, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. } => {
            format!("NVRTC failed to compile the kernels for {arch}: {nvrtc:?}\n{}", log.to_string_lossy())
        }
        other => format!("NVRTC failed for {arch}: {other}"),
    })?;
    map.push((arch.to_string(), ptx.clone()));
    Ok(ptx)
}

/// Parses the `extern "C" __global__` kernels of a CUDA source into (name, signature)
/// pairs using the letters of [`Kernel`] (`?` for a parameter type it does not know).
pub fn parse_signatures(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let marker = "extern \"C\" __global__ void ";
    let mut rest = src;
    while let Some(pos) = rest.find(marker) {
        let after = &rest[pos + marker.len()..];
        let open = after.find('(').expect("kernel without parameter list");
        let close = after.find(')').expect("unterminated parameter list");
        let name = after[..open].trim().to_string();
        let params = &after[open + 1..close];
        let sig: String = params
            .split(',')
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.contains('*') {
                    'P'
                } else if p.starts_with("i64") || p.starts_with("long long") {
                    'I'
                } else if p.starts_with("float") || p.starts_with("const float") {
                    'F'
                } else if p.starts_with("double") || p.starts_with("const double") {
                    'D'
                } else {
                    '?'
                }
            })
            .collect();
        out.push((name, sig));
        rest = &after[close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_sources() {
        let parsed = parse_signatures(SOURCE);
        let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
        for k in Kernel::ALL {
            let found = parsed.iter().find(|(n, _)| n == k.name());
            let (_, sig) = found.unwrap_or_else(|| panic!("kernel {} not in the sources (have {names:?})", k.name()));
            assert_eq!(sig, k.signature(), "signature of kernel {}", k.name());
        }
        assert_eq!(parsed.len(), Kernel::ALL.len(), "kernels in the sources but not in the table: {names:?}");
    }

    #[test]
    fn sources_are_self_contained() {
        let code: Vec<&str> = SOURCE.lines().map(str::trim).filter(|l| !l.starts_with("//")).collect();
        assert!(!code.iter().any(|l| l.starts_with("#include")), "NVRTC sources must not include headers");
        assert!(!code.iter().any(|l| l.contains("atomic")), "no atomics: results must be reproducible");
    }

    /// NVRTC needs no GPU: where libnvrtc can be loaded, the kernels must compile for the
    /// architectures the project targets (H200 = compute_90; compute_80 for A100).
    #[test]
    fn compiles_with_nvrtc_where_present() {
        // SAFETY: only tries to dlopen libnvrtc.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            let required = std::env::var("UCGM_REQUIRE_CUDA").is_ok_and(|v| v == "1");
            assert!(!required, "UCGM_REQUIRE_CUDA=1 but libnvrtc cannot be loaded");
            eprintln!("skipped: libnvrtc not found");
            return;
        }
        for arch in ["compute_90", "compute_80"] {
            let ptx = compiled(arch).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for k in Kernel::ALL {
                assert!(text.contains(&format!(".entry {}(", k.name())), "PTX for {arch} lacks kernel {}", k.name());
            }
        }
    }

    #[test]
    fn parser_reads_kinds() {
        let src = "extern \"C\" __global__ void k(const float* a, float* b, i64 n, float s, double d, const i64* l) {}";
        assert_eq!(parse_signatures(src), vec![("k".to_string(), "PPIFDP".to_string())]);
    }
}
