/*
 * ucgm.h — C interface of ucgm: train and sample diffusion transformers with Unified
 * Continuous Generative Models (UCGM-T / UCGM-S). Link with -lucgm (libucgm.so) or with
 * libucgm.a plus -lpthread -ldl -lm; once installed (scripts/install.sh), take the flags
 * from pkg-config (`pkg-config --cflags --libs ucgm`, `--static` for libucgm.a) or CMake
 * (`find_package(ucgm)`, target ucgm::ucgm or ucgm::ucgm_static). The shared library's
 * SONAME is libucgm.so.<UCGM_ABI_VERSION>.
 *
 * Valgrind. Run memcheck with --suppressions=<prefix>/share/ucgm/valgrind.supp (in the
 *   source tree: ffi/c/valgrind.supp): it hides one "possibly lost" record per exited
 *   worker thread that rayon's thread-pool bookkeeping (crossbeam-epoch) frees lazily;
 *   definite leaks are never suppressed.
 *
 * CONVENTIONS
 *
 * Status. Every fallible call returns a ucgm_status: UCGM_STATUS_OK (0) or one of the
 *   UCGM_STATUS_* codes (values are never renumbered). ucgm_status_str() gives static
 *   text for a code; ucgm_last_error_message() the detail of the last failed call on the
 *   calling thread (thread-local; "" after a call that succeeded; the pointer stays
 *   valid for the thread's life, the text changes with each call on that thread). A handle stays usable after any failed call;
 *   output buffers of a failed call may be partly written.
 *
 * Ownership. Handles (ucgm_model*, ucgm_trainer*) are created by *_create / *_load and
 *   released by the matching *_free, which accepts NULL. The library never returns
 *   other memory for the caller to free: outputs go to caller-owned buffers with an
 *   explicit length, and returned strings (const char*) are static or thread-local and
 *   must not be freed. The library keeps no pointer the caller passed once a call
 *   returns, except the callbacks and their user_data.
 *
 * Backends. A model or trainer runs on the backend chosen when it is made
 *   (ucgm_model_params.backend): UCGM_BACKEND_CPU, UCGM_BACKEND_CUDA, or
 *   UCGM_BACKEND_AUTO (the default), which takes CUDA when the driver (libcuda.so),
 *   NVRTC and cuBLAS load at run time and the device (cuda_device, default 0) opens, and
 *   the CPU otherwise. Nothing needs CUDA to load this library: the CUDA libraries are
 *   opened at run time, and a missing one is a status, never a crash. AUTO says which
 *   backend it took and why CUDA was not used in a UCGM_LOG_INFO line ("backend auto:
 *   cpu (16 threads); cuda unavailable: ...") and in the info structs'
 *   backend_description; an explicit UCGM_BACKEND_CUDA that cannot be used fails with
 *   UCGM_STATUS_BACKEND and the reason. ucgm_backend_available() asks beforehand. TF32
 *   tensor-core products are off unless ucgm_model_params.tf32 = 1; bf16 mixed precision
 *   (matrix products on bf16 operands, float32 accumulation, weights and optimizer state
 *   kept in float32) is off unless ucgm_model_params.bf16 = 1. A trainer made from
 *   a model, and a model exported from a trainer, run on the same kind of backend with
 *   the same settings. Results on CUDA match the CPU to float32 rounding (bf16: to about
 *   1e-2 relative), not bit for bit; each backend is deterministic on its own.
 *
 * Threading. A handle is used by one thread at a time (a second thread using it at
 *   the same moment gets UCGM_STATUS_INVALID_ARGUMENT, never a data race); different
 *   handles share nothing and may be used from different threads at once. Each CPU
 *   handle owns its own pool of worker threads; each CUDA handle its own CUDA stream,
 *   cuBLAS handle and compiled kernels (on the shared primary context of its device),
 *   so CUDA handles on one device run concurrently but compete for it. Calls return
 *   when their work is finished: outputs are on the host. ucgm_model_cancel /
 *   ucgm_trainer_cancel may be called from any thread at any time. Callbacks run on the
 *   thread that made the call and must not call into the library with the same handle
 *   (cancel excepted).
 *
 * Tensors. float32, row-major, contiguous; images are NCHW: [B, C, H, W], with C and
 *   H = W from ucgm_model_get_info (image_len = C·H·W). Lengths (*_len arguments) are in
 *   elements, not bytes. Inputs must be finite (NaN or Inf fails with
 *   UCGM_STATUS_NON_FINITE). Class labels are int32_t in 0..K-1; K (= num_classes) is
 *   the null class, which means "unconditional" where the docs allow it.
 *
 * Params structs. Every struct starts with size_t struct_size and only ever grows at
 *   the end. Fill a params struct with its *_params_default(&p, sizeof p), then change
 *   fields. For an info (output) struct set struct_size = sizeof before the call. A
 *   struct_size is accepted when it is the size of a released version of the struct,
 *   or larger than this library's size with every byte past that size zero (a newer
 *   header whose new fields are left at zero); anything else fails with
 *   UCGM_STATUS_INVALID_ARGUMENT. Enums and booleans are int32_t and validated.
 *
 * Callbacks. Nothing is printed. Each handle has its own log and progress callbacks
 *   (set at creation through ucgm_model_params, or with *_set_*_callback); they are
 *   never copied to another handle. The library keeps the function pointer and
 *   user_data until they are replaced or the handle is freed.
 *
 * Pointers. Every pointer argument must be valid for the documented number of
 *   elements, or NULL where the documentation says NULL is allowed; NULL elsewhere
 *   fails with UCGM_STATUS_INVALID_ARGUMENT.
 *
 * Limits. The library never aborts its host. threads lie in 0..=UCGM_MAX_THREADS and
 *   sampling steps in 1..=UCGM_MAX_STEPS (else UCGM_STATUS_INVALID_ARGUMENT); buffers
 *   the library sizes from caller values (batch, steps, trajectory) are checked against
 *   the machine's physical memory before anything is allocated and allocated fallibly:
 *   UCGM_STATUS_OUT_OF_MEMORY, with the handle unchanged. The command-line tool and
 *   the Rust API enforce the same limits.
 *
 * Files. ucgm_model_load reads weights files and training checkpoints (their sampling
 *   EMA unless ucgm_model_params.checkpoint_weights says otherwise). Files the library
 *   writes carry a CRC-32 of their tensors; a damaged file fails with
 *   UCGM_STATUS_FORMAT. A file may carry a sampler preset, which ucgm_sample uses.
 */


#ifndef UCGM_H
#define UCGM_H

/* Generated by cbindgen from src/capi/ (build.rs). Do not edit by hand. */

#include <stddef.h>
#include <stdint.h>

// Version of this header (Cargo.toml's package version). ucgm_version() gives the
// library's at run time; ucgm_abi_version() is what compatibility depends on.
#define UCGM_VERSION_MAJOR 0
#define UCGM_VERSION_MINOR 1
#define UCGM_VERSION_PATCH 0
#define UCGM_VERSION_STRING "0.1.0"

// UCGM_API marks every function of the C API: default visibility with GCC and Clang
// (so the declarations stay exported under -fvisibility=hidden), dllimport on Windows
// unless UCGM_STATIC is defined (linking libucgm statically). Define UCGM_API before
// including this header to override it.
#ifndef UCGM_API
#  if defined(_WIN32) || defined(__CYGWIN__)
#    if defined(UCGM_STATIC)
#      define UCGM_API
#    else
#      define UCGM_API __declspec(dllimport)
#    endif
#  elif defined(__GNUC__) || defined(__clang__)
#    define UCGM_API __attribute__((visibility("default")))
#  else
#    define UCGM_API
#  endif
#endif

// ABI version of this header and library: bumped only on an incompatible change (a
// renumbered value or a changed signature, which this project never makes lightly).
// Compare `ucgm_abi_version()` with `UCGM_ABI_VERSION` at start-up.
#define UCGM_ABI_VERSION 1

// Largest `threads` value accepted (`ucgm_model_params.threads`, the trainer's); 0 =
// one per logical CPU. The CLI and the Rust API enforce the same limit.
#define UCGM_MAX_THREADS 1024

// Largest `steps` accepted by `ucgm_sample` / `ucgm_sample_params.steps`.
#define UCGM_MAX_STEPS 100000

// `ucgm_system_info.simd` bit: x86 SSE2.
#define UCGM_SIMD_SSE2 1

// `ucgm_system_info.simd` bit: x86 AVX.
#define UCGM_SIMD_AVX (1 << 1)

// `ucgm_system_info.simd` bit: x86 AVX2.
#define UCGM_SIMD_AVX2 (1 << 2)

// `ucgm_system_info.simd` bit: x86 FMA.
#define UCGM_SIMD_FMA (1 << 3)

// `ucgm_system_info.simd` bit: x86 AVX-512F.
#define UCGM_SIMD_AVX512F (1 << 4)

// `ucgm_system_info.simd` bit: Arm NEON.
#define UCGM_SIMD_NEON (1 << 5)

// pool3 feature dimension (`out_pool3` holds n rows of it).
#define UCGM_INCEPTION_POOL3_DIM 2048

// Logit classes (`out_logits` holds n rows of it).
#define UCGM_INCEPTION_LOGITS_DIM 1008

// Largest feature dimension of a statistics handle (its covariance then takes 8 GiB).
#define UCGM_FID_STATS_MAX_DIM 32768

// The SD-VAE scaling factor of the reference configs (`latent_multiplier` 0.18215).
#define UCGM_SD_VAE_MULTIPLIER 0.18215

// Bytes of the `backend_description` text of the info structs, NUL included.
#define UCGM_BACKEND_DESCRIPTION_LEN 256

// Opaque feature statistics handle: `ucgm_fid_stats_new` (empty, takes features) or
// `ucgm_fid_stats_load_npz` (finished); release with `ucgm_fid_stats_free`.
typedef struct ucgm_fid_stats ucgm_fid_stats;

// Opaque FID Inception handle: load with `ucgm_inception_load`, release with
// `ucgm_inception_free`.
typedef struct ucgm_inception ucgm_inception;

// Opaque model handle: create with `ucgm_model_create` or `ucgm_model_load`, release
// with `ucgm_model_free`.
typedef struct ucgm_model ucgm_model;

// Opaque trainer handle: create with `ucgm_trainer_create`, `ucgm_trainer_resume` or
// `ucgm_trainer_create_from_checkpoint`, release with `ucgm_trainer_free`.
typedef struct ucgm_trainer ucgm_trainer;

// Opaque VAE handle: load with `ucgm_vae_load`, release with `ucgm_vae_free`.
typedef struct ucgm_vae ucgm_vae;

// Status returned by every fallible call. Values are never renumbered.
typedef int32_t ucgm_status;

// Compute backend selector (`int32_t`).
typedef int32_t ucgm_backend;

// What `ucgm_get_system_info` reports.
typedef struct ucgm_system_info {
    // Set by the caller to `sizeof(ucgm_system_info)`.
    size_t struct_size;
    // Logical CPUs this process may use (the default thread count of a CPU model).
    uint32_t logical_cpus;
    // `UCGM_SIMD_*` bits the CPU supports (detected at run time).
    uint32_t simd;
    // Bit `1 << UCGM_BACKEND_*` set for each usable backend: CPU always, CUDA when
    // device 0 can be used here.
    uint32_t backends;
} ucgm_system_info;

// Sum all-reduce of `n` elements in place (`float` or `double` by the field's name);
// returns 0 on success, anything else is an error.
typedef int32_t (*ucgm_all_reduce_f32_fn)(float *values, size_t n, void *user_data);

// Sum all-reduce of `n` doubles in place; returns 0 on success.
typedef int32_t (*ucgm_all_reduce_f64_fn)(double *values, size_t n, void *user_data);

// Broadcast of `n` bytes from rank `root` into every rank's buffer; returns 0 on success.
typedef int32_t (*ucgm_broadcast_fn)(uint8_t *bytes, size_t n, uint32_t root, void *user_data);

// The host's process group, for `ucgm_trainer_set_communicator`. Fill with
// `ucgm_communicator_default` (rank 0 of 1, no callbacks, timeout 300 s), then set:
// * `rank`, `world` — this process's rank in 0..world;
// * `all_reduce_f32`, `all_reduce_f64`, `broadcast` — required when `world` > 1. They
//   are called on the thread that uses the trainer, in the same order on every rank,
//   and must give every rank the identical result;
// * `timeout_seconds` — a callback that has not returned after this long ends the
//   process with exit status 75 after a message on stderr (a dead or hung peer must not
//   hang the job; a blocked collective cannot be unwound);
// * `user_data` — passed to every callback.
typedef struct ucgm_communicator {
    // `sizeof(struct ucgm_communicator)`.
    size_t struct_size;
    uint32_t rank;
    uint32_t world;
    ucgm_all_reduce_f32_fn all_reduce_f32;
    ucgm_all_reduce_f64_fn all_reduce_f64;
    ucgm_broadcast_fn broadcast;
    double timeout_seconds;
    void *user_data;
} ucgm_communicator;

// Network family (`int32_t`).
typedef int32_t ucgm_arch;

// Log levels passed to a `ucgm_log_callback` (smaller = more severe).
typedef int32_t ucgm_log_level;

// Log callback: `level` is a `UCGM_LOG_*` value, `message` a NUL-terminated UTF-8 line
// (no trailing newline) valid only during the call. Called on the thread that made the
// library call. Without a callback the library prints nothing.
typedef void (*ucgm_log_callback)(ucgm_log_level level, const char *message, void *user_data);

// Which weights of a training checkpoint `ucgm_model_load` reads (`int32_t`).
typedef int32_t ucgm_checkpoint_weights;

// How to create or load a model. Fill with `ucgm_model_params_default`.
typedef struct ucgm_model_params {
    // `sizeof(ucgm_model_params)`, set by `ucgm_model_params_default`.
    size_t struct_size;
    // Create: a reference name such as "TiT-XL/2" or "SiT-S/2" (sizes S, B, L, XL; patch
    // 1, 2 or 4); `arch`, `patch`, `hidden`, `depth` and `heads` are then ignored. NULL
    // (default): the custom shape below. Ignored by load.
    const char *name;
    // Create: `UCGM_ARCH_SIT`, `UCGM_ARCH_TIT` or `UCGM_ARCH_LIGHTNINGDIT` (default TiT).
    ucgm_arch arch;
    // Create: side of the square input (default 32).
    uint32_t input_size;
    // Create: input = output channels (default 4).
    uint32_t in_channels;
    // Create: number of classes K; label K is the null (unconditional) class (default 1000).
    uint32_t num_classes;
    // Create, custom shape: patch side (default 2).
    uint32_t patch;
    // Create, custom shape: hidden width D (default 384).
    uint32_t hidden;
    // Create, custom shape: transformer blocks (default 12).
    uint32_t depth;
    // Attention heads. Create, custom shape: 0 (default) = hidden / 64. Load: 0 = from the
    // file's metadata or its shapes; non-zero overrides (needed only for a reference
    // checkpoint of a non-standard width).
    uint32_t heads;
    // Create: seed of the reference initialisation (default 0).
    uint64_t seed;
    // `UCGM_BACKEND_AUTO` (default: CUDA when it can be used here, else the CPU, and the
    // log callback is told which and why), `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA`
    // (fails with `UCGM_STATUS_BACKEND` and the reason when CUDA cannot be used).
    ucgm_backend backend;
    // CPU worker threads of this model's own pool; 0 (default) = one per logical CPU.
    // Unused on CUDA.
    int32_t threads;
    // Log callback of the new handle (also receives the creation messages); NULL = silent.
    ucgm_log_callback log_callback;
    // Passed to `log_callback`.
    void *log_user_data;
    // CUDA device ordinal for `UCGM_BACKEND_CUDA` / `UCGM_BACKEND_AUTO` (default 0).
    // Added after ABI 1's first release (a caller with the older, shorter struct gets 0).
    int32_t cuda_device;
    // 1 = let cuBLAS use TF32 tensor cores for float32 products on CUDA (about 3×
    // faster, ~1e-3 relative error per product instead of ~1e-7); 0 (default) = off.
    // Ignored on the CPU. Added with `cuda_device`.
    int32_t tf32;
    // 1 = bf16 mixed precision: every matrix product on bf16-rounded operands with
    // float32 accumulation, everything else float32; outputs within ~1e-2 relative of
    // float32. 0 (default) = off. On CUDA (tensor cores) for sampling and training, with
    // float32 master weights and optimizer state. On the CPU for sampling: a model
    // handle holds its Linear weights in bf16 (about half the memory; `bytes_held` says
    // so) and reading its weights gives the bf16-rounded values; a trainer refuses it
    // (training on the CPU runs in float32). Added with `cuda_device`.
    int32_t bf16;
    // Load of a training checkpoint (`ucgm train`, the demo, `ucgm_trainer_save`):
    // which of its weights become the model: `UCGM_CHECKPOINT_EMA` (0, default: the
    // sampling EMA, as the reference samples), `UCGM_CHECKPOINT_ONLINE` or
    // `UCGM_CHECKPOINT_MOD`. A plain weights file has one set: `UCGM_CHECKPOINT_MOD` is
    // then an error, the others load it. Occupies what was tail padding before, so the
    // struct's size is unchanged (an older caller's zeroed struct means EMA).
    ucgm_checkpoint_weights checkpoint_weights;
} ucgm_model_params;

// Inception preprocessing mode (`int32_t`).
typedef int32_t ucgm_inception_mode;

// Kind of latent normalisation (`int32_t`).
typedef int32_t ucgm_latent_norm_kind;

// What `ucgm_model_get_info` reports.
typedef struct ucgm_model_info {
    // Set by the caller to `sizeof(ucgm_model_info)`.
    size_t struct_size;
    // `UCGM_ARCH_SIT`, `UCGM_ARCH_TIT`, `UCGM_ARCH_LIGHTNINGDIT`, `UCGM_ARCH_DDT` or
    // `UCGM_ARCH_EDM2`.
    ucgm_arch arch;
    // Side H = W of one sample.
    uint32_t input_size;
    // Channels C of one sample.
    uint32_t in_channels;
    // Number of classes K (label K = null class).
    uint32_t num_classes;
    // Patch side p (EDM2: 1).
    uint32_t patch;
    // Hidden width D (EDM2: the model channels of the first level).
    uint32_t hidden;
    // Transformer blocks (EDM2: residual blocks per encoder level).
    uint32_t depth;
    // Attention heads (EDM2: 0, the count varies per block: channels / 64).
    uint32_t heads;
    // MLP hidden width (EDM2: 0).
    uint32_t mlp_hidden;
    // Tokens per sample, (H / p)² (EDM2: H·W).
    uint32_t tokens;
    // Elements of one sample, C·H·W.
    uint64_t image_len;
    // Trainable parameters.
    uint64_t param_count;
    // The backend in use: `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA` (never AUTO).
    ucgm_backend backend;
    // Worker threads of the model's CPU pool (0 on CUDA).
    uint32_t threads;
    // The CUDA device in use, or -1 on the CPU. Added after ABI 1's first release.
    int32_t cuda_device;
    // 1 when TF32 products are enabled (CUDA), else 0.
    int32_t tf32;
    // 1 when products run in bf16 mixed precision (CUDA; on the CPU: sampling), else 0.
    int32_t bf16;
    // NUL-terminated UTF-8: the backend in use and, when `UCGM_BACKEND_AUTO` chose the
    // CPU, why CUDA was not used, e.g. "cuda:0 NVIDIA H200 (sm_90, 139.8 GiB, 1
    // device(s))" or "cpu (16 threads); cuda unavailable: the CUDA driver library
    // (libcuda.so) not found (…)". Cut at a character boundary if longer.
    char backend_description[UCGM_BACKEND_DESCRIPTION_LEN];
    // Bytes the handle holds now: the weights once, in the layout its use wants (a
    // loaded model that only samples keeps the transposed inference layout instead of
    // the plain one), gradients or caches when present, and the activation workspace
    // kept for the last batch size sampled (allocated once per batch size, reused across
    // steps and calls; 0 before the first sample). Added after ABI 1's
    // `backend_description`.
    uint64_t bytes_held;
} ucgm_model_info;

// Progress callback: called after each step with (steps done, total steps); return
// non-zero to stop the call, which then fails with `UCGM_STATUS_CANCELLED`. Called on
// the thread that made the library call; it must not call into the library with the
// same handle, except `*_cancel`.
typedef int32_t (*ucgm_progress_callback)(uint64_t done, uint64_t total, void *user_data);

// Transport (`int32_t`): how the network's output is read (spec §1.2).
typedef int32_t ucgm_transport;

// How ρ (fresh noise per step) is chosen (`int32_t`).
typedef int32_t ucgm_stochasticity;

// Every UCGM-S setting. Fill with `ucgm_sample_params_default`; the defaults are the
// reference's v2 defaults (Linear, 35 steps, order 1, ρ = 0, κ = 0, no time warp, no
// gaps, no guidance), batch 1, seed 0, random labels, noise from the seed.
typedef struct ucgm_sample_params {
    // `sizeof(ucgm_sample_params)`, set by `ucgm_sample_params_default`.
    size_t struct_size;
    // A `UCGM_TRANSPORT_*` value matching how the network was trained.
    ucgm_transport transport;
    // Requested steps N ≥ 1 (order 2 uses ⌊(N + 1)/2⌋ grid points).
    uint32_t steps;
    // 1 = Euler / DDIM-like, 2 = Heun-like.
    uint32_t order;
    // `UCGM_STOCHASTICITY_FIXED` (use `rho`) or `UCGM_STOCHASTICITY_SDE`.
    ucgm_stochasticity stochasticity;
    // ρ ∈ [0, 1]: 0 = deterministic, 1 = consistency-model multistep sampling.
    double rho;
    // Extrapolation κ ≥ 0 (0.2–0.6 for multi-step models).
    double extrapolation;
    // Kumaraswamy time warp [a, b, c], each > 0 ([1, 1, 1] = none; [1.17, 0.8, 1.1] recommended).
    double time_dist_ctrl[3];
    // Grid gaps [g0, g1] at the noise and data ends.
    double rfba_gap_steps[2];
    // Classifier-free guidance scale (0 = off). A `UCGM_ARCH_LIGHTNINGDIT` model guides
    // output channels 0–2 only (its reference's rule, which its released FIDs were
    // measured with); every other network guides all channels.
    double cfg_scale;
    // Native-time interval [lo, hi] (inclusive) where guidance applies.
    double cfg_interval[2];
    // Samples per call B ≥ 1.
    uint32_t batch;
    // Seed of the draws this call makes itself (see the order above).
    uint64_t seed;
    // `[batch]` classes in 0..=K (K = null class, unconditional), or NULL: random
    // classes in 0..K-1 from the seed.
    const int32_t *labels;
    // `[batch, C, H, W]` initial noise z, or NULL: drawn from the seed.
    const float *noise;
    // Elements at `noise` (batch·C·H·W when `noise` is set).
    size_t noise_len;
    // `[S, batch, C, H, W]` per-step noise for stochastic steps (ρ > 0), consumed one
    // tensor per step, or NULL: drawn from the seed. Too few tensors fail the call.
    const float *step_noise;
    // Elements at `step_noise` (a multiple of batch·C·H·W).
    size_t step_noise_len;
} ucgm_sample_params;

// What a sampling call reports (optional output of `ucgm_sample_ext`).
typedef struct ucgm_sample_info {
    // Set by the caller to `sizeof(ucgm_sample_info)`.
    size_t struct_size;
    // Grid points n (the trajectory has n + 1 entries).
    uint32_t grid_points;
    // Network evaluations (a guided evaluation counts once).
    uint32_t nfe;
    // How many of them ran the doubled guidance batch.
    uint32_t guided_evals;
    // Per-step noise tensors consumed (from `step_noise` or the seed).
    uint32_t noise_tensors;
} ucgm_sample_info;

// `ucgm_train_params.enhanced_style` (`int32_t`): which predictions the enhanced target
// contrasts; required (not NONE) when `enhanced_ratio` ≠ 0.
typedef int32_t ucgm_enhanced_style;

// `ucgm_train_params.weight_function` (`int32_t`): per-sample time weight of the loss.
typedef int32_t ucgm_time_weight;

// `ucgm_train_params.optimizer` (`int32_t`).
typedef int32_t ucgm_optimizer;

// Every UCGM-T and optimizer setting (the reference's `transport:` and `optimizer:`
// keys, spec §2.1 / §2.9). Fill with `ucgm_train_params_default`: the reference's
// UCGM-T defaults (plain flow matching with 10 % label dropping), AdamW with lr 1e-4,
// β = (0.9, 0.999), no weight decay, no clipping, sampling EMA 0.9999, seed 0.
typedef struct ucgm_train_params {
    // `sizeof(ucgm_train_params)`, set by `ucgm_train_params_default`.
    size_t struct_size;
    // `transport.type`: a `UCGM_TRANSPORT_*` value (default Linear).
    ucgm_transport transport;
    // `enhanced_style`: a `UCGM_ENHANCED_*` value (default NONE).
    ucgm_enhanced_style enhanced_style;
    // `lab_drop_ratio` ∈ [0, 1]: the last round(ratio·B) labels of a batch become null (0.1).
    double lab_drop_ratio;
    // `consistc_ratio` λ ∈ [0, 1]: 0 = multi-step training, 1 = few-step (0).
    double consistc_ratio;
    // `enhanced_ratio` ζ: strength of the enhanced target; ζ ≥ 1 with λ = 0 is read as a
    // guidance scale s and becomes 1 − 1/s (0).
    double enhanced_ratio;
    // `scaled_cbl_eps` c ≥ 0 of the robust loss √(m + c²) − c (0).
    double scaled_cbl_eps;
    // `ema_decay_rate` ∈ [0, 1] of `mod`: 0 = the online network, 1 = frozen (0.999).
    double ema_decay_rate;
    // `enhanced_range` (t_lo, t_hi), open (default [0, 0.75]).
    double enhanced_range[2];
    // `time_dist_ctrl` [a, b, s]: training times Beta(a, b)·s (default [1, 1, 1]).
    double time_dist_ctrl[3];
    // `weight_funcion`: a `UCGM_TIME_WEIGHT_*` value (default NONE).
    ucgm_time_weight weight_function;
    // `wt_cosine_loss`: 1 adds the cosine-dissimilarity term, 0 not (default 0).
    int32_t wt_cosine_loss;
    // A `UCGM_OPTIMIZER_*` value (default AdamW).
    ucgm_optimizer optimizer;
    // Learning rate ≥ 0 (1e-4); no schedule, as the reference.
    double lr;
    // Weight decay ≥ 0 (0).
    double weight_decay;
    // β1 ∈ [0, 1) (0.9).
    double beta1;
    // β2 ∈ [0, 1) (0.999).
    double beta2;
    // eps > 0 (1e-8).
    double eps;
    // Gradient-norm clipping threshold; 0 = no clipping (default 0).
    double max_grad_norm;
    // Decay of the sampling EMA ∈ [0, 1] (0.9999).
    double ema_decay;
    // Seed of the trainer's draws (t, z) (0).
    uint64_t seed;
    // `ucgm_trainer_create_from_checkpoint`: 1 = do not restore the optimizer state (0).
    int32_t no_reopt;
    // `ucgm_trainer_create_from_checkpoint`: 1 = do not restore `mod` (0).
    int32_t no_reuni;
} ucgm_train_params;

// What `ucgm_trainer_get_info` reports.
typedef struct ucgm_trainer_info {
    // Set by the caller to `sizeof(ucgm_trainer_info)`.
    size_t struct_size;
    // Completed training steps (continues across checkpoints).
    uint64_t step;
    // Loss of the last step of this handle (NaN before its first step).
    double last_loss;
    // Gradient norm (before clipping) of the last step (NaN before the first).
    double last_grad_norm;
    // Labels turned into the null class in the last step.
    uint32_t last_dropped;
    // 1 when `mod` exists as a separate network (`UCGM_WEIGHTS_MOD` can be read).
    int32_t has_mod;
    // Trainable parameters.
    uint64_t param_count;
    // Elements of one sample, C·H·W.
    uint64_t image_len;
    // Number of classes K (label K = null class).
    uint32_t num_classes;
    // Worker threads of the trainer's CPU pool (0 on CUDA).
    uint32_t threads;
    // The backend in use: `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA`. Added after ABI
    // 1's first release.
    ucgm_backend backend;
    // The CUDA device in use, or -1 on the CPU.
    int32_t cuda_device;
    // 1 when TF32 products are enabled (CUDA), else 0.
    int32_t tf32;
    // 1 when products run in bf16 mixed precision (CUDA only: a CPU trainer refuses
    // bf16), else 0.
    int32_t bf16;
    // NUL-terminated UTF-8: the backend in use and, when `UCGM_BACKEND_AUTO` chose the
    // CPU, why CUDA was not used (as `ucgm_model_info.backend_description`).
    char backend_description[UCGM_BACKEND_DESCRIPTION_LEN];
} ucgm_trainer_info;

// Which weights of a trainer (`int32_t`).
typedef int32_t ucgm_weights;

// What `ucgm_vae_get_info` reports.
typedef struct ucgm_vae_info {
    // Set by the caller to `sizeof(ucgm_vae_info)`.
    size_t struct_size;
    // Latent channels z (4 for SD-VAE, 32 for VA-VAE / E2E-VAE).
    uint32_t latent_channels;
    // Spatial downsampling factor f: an h×w image has an (h/f)×(w/f) latent.
    uint32_t downsample_factor;
    // Image channels the encoder takes (3 for RGB).
    uint32_t in_channels;
    // Image channels the decoder gives (3 for RGB).
    uint32_t out_channels;
    // Bytes the handle holds: the weights plus the activation workspace kept from the
    // last encode or decode for the next call (0 before the first).
    uint64_t bytes_held;
    // The backend in use: `UCGM_BACKEND_CPU` or `UCGM_BACKEND_CUDA` (never AUTO).
    ucgm_backend backend;
    // Worker threads of the VAE's CPU pool (0 on CUDA).
    uint32_t threads;
    // The CUDA device in use, or -1 on the CPU.
    int32_t cuda_device;
    // NUL-terminated UTF-8: the backend in use and, when `UCGM_BACKEND_AUTO` chose the
    // CPU, why CUDA was not used (as `ucgm_model_info.backend_description`).
    char backend_description[UCGM_BACKEND_DESCRIPTION_LEN];
} ucgm_vae_info;

// Success.
#define UCGM_STATUS_OK 0

// An argument is NULL, out of range, inconsistent or has the wrong length.
#define UCGM_STATUS_INVALID_ARGUMENT 1

// A file could not be read or written.
#define UCGM_STATUS_IO 2

// A file is malformed, truncated or inconsistent.
#define UCGM_STATUS_FORMAT 3

// A weights file does not match the model (missing, extra or mis-shaped tensors).
#define UCGM_STATUS_WEIGHTS 4

// An input holds NaN or infinity where finite values are required.
#define UCGM_STATUS_NON_FINITE 5

// The call was stopped by `*_cancel` or by a progress callback returning non-zero.
#define UCGM_STATUS_CANCELLED 6

// A compute backend is unavailable (the reason is in the last error message) or failed.
#define UCGM_STATUS_BACKEND 7

// The request is valid but not supported by this build.
#define UCGM_STATUS_UNSUPPORTED 8

// A bug inside the library (a caught panic, a broken invariant).
#define UCGM_STATUS_INTERNAL 9

// A buffer sized by the caller's values (batch, steps, trajectory) is larger than this
// machine's memory or could not be allocated; nothing was computed and the handle is
// unchanged.
#define UCGM_STATUS_OUT_OF_MEMORY 10

// CUDA when it can be used here (the driver, NVRTC and cuBLAS libraries load and the
// device opens), else the CPU. Which one, and why CUDA was not used, goes to the log
// callback (`UCGM_LOG_INFO`) and into the info structs' `backend_description`.
#define UCGM_BACKEND_AUTO 0

// The CPU backend (always built).
#define UCGM_BACKEND_CPU 1

// The CUDA backend (cuBLAS + NVRTC kernels, libraries opened at run time). Selecting it
// where it cannot be used fails with `UCGM_STATUS_BACKEND` and the reason.
#define UCGM_BACKEND_CUDA 2

// A call failed; the message is the one `ucgm_last_error_message()` returns.
#define UCGM_LOG_ERROR 1

// Something the caller may want to change.
#define UCGM_LOG_WARN 2

// One line per model creation, load, save, sampling run or training call.
#define UCGM_LOG_INFO 3

// Details (chosen backend, settings).
#define UCGM_LOG_DEBUG 4

// pytorch-fid: images in [0, 1] as given, PyTorch bilinear resize to 299×299, `2x − 1`.
#define UCGM_INCEPTION_PYTORCH_FID 0

// torch-fidelity `inception-v3-compat` (the UCGM reference's `eval.py`): images in
// [0, 1] are first quantised to the uint8 values `trunc(255·x)` (the reference's
// `x * 255 → uint8` cast), then TensorFlow-1 bilinear resize, `(v − 128)/128`.
#define UCGM_INCEPTION_TORCH_FIDELITY 1

// None: the model samples raw VAE latents (x = z).
#define UCGM_LATENT_NORM_NONE 0

// A scale: x = multiplier · z (SD-VAE: `UCGM_SD_VAE_MULTIPLIER`).
#define UCGM_LATENT_NORM_SCALE 1

// Per-channel statistics: `x = (z − mean[c]) / std[c] · multiplier` (VA-VAE and E2E-VAE,
// multiplier 1).
#define UCGM_LATENT_NORM_STATS 2

// Plain DiT with continuous time (LayerNorm, GELU MLP).
#define UCGM_ARCH_SIT 0

// UCGM's TiT (RMSNorm, qk-norm, 2-D RoPE, SwiGLU).
#define UCGM_ARCH_TIT 1

// LightningDiT (TiT's layers with learned RMSNorm weights, qk-norm off); its guidance
// acts on channels 0–2 only.
#define UCGM_ARCH_LIGHTNINGDIT 2

// DDT, the encoder–decoder DiT (loaded from weights only: its encoder depth is not a
// creation parameter).
#define UCGM_ARCH_DDT 3

// The EDM2 UNet (reference `networks/edm2.py`), loaded from a state dict with the
// reference's tensor names (recognised by its `emb_fourier.freqs`); forward only:
// sampling (EDM transport by default) and `ucgm_forward` work, training, parameter
// access and saving fail with `UCGM_STATUS_UNSUPPORTED`.
#define UCGM_ARCH_EDM2 4

// The sampling EMA (default).
#define UCGM_CHECKPOINT_EMA 0

// The online (trained) weights.
#define UCGM_CHECKPOINT_ONLINE 1

// The auxiliary network `mod` (exists only in runs that use it).
#define UCGM_CHECKPOINT_MOD 2

// α = t, γ = 1 − t (rectified flow; SiT/REPA; what UCGM trains).
#define UCGM_TRANSPORT_LINEAR 0

// α = 1 − t, γ = t (LightningDiT/DDT; t = 0 is noise).
#define UCGM_TRANSPORT_RELINEAR 1

// sCM's TrigFlow.
#define UCGM_TRANSPORT_TRIGFLOW 2

// Trigonometric interpolant, linear target.
#define UCGM_TRANSPORT_TRIGLINEAR 3

// The reference's arbitrary "Random" transport.
#define UCGM_TRANSPORT_RANDOM 4

// EDM preconditioning.
#define UCGM_TRANSPORT_EDM 5

// Use `ucgm_sample_params.rho` for every step.
#define UCGM_STOCHASTICITY_FIXED 0

// The reference's adaptive "SDE" ρ, computed at the first step and then kept.
#define UCGM_STOCHASTICITY_SDE 1

// No enhanced target.
#define UCGM_ENHANCED_NONE 0

// "ft-vs-fe": online conditional vs `mod` unconditional (multi-step training).
#define UCGM_ENHANCED_FT_VS_FE 1

// "fc-vs-xz": `mod` conditional vs the targets (few-step training).
#define UCGM_ENHANCED_FC_VS_XZ 2

// "fc-vs-fe": `mod` conditional vs `mod` unconditional (tuning pre-trained models).
#define UCGM_ENHANCED_FC_VS_FE 3

// No weight.
#define UCGM_TIME_WEIGHT_NONE 0

// cos(1.57·t).
#define UCGM_TIME_WEIGHT_COSINE 1

// The reference's AdamW.
#define UCGM_OPTIMIZER_ADAMW 0

// torch.optim.RAdam.
#define UCGM_OPTIMIZER_RADAM 1

// The network being trained.
#define UCGM_WEIGHTS_ONLINE 0

// The sampling EMA (what the reference samples with).
#define UCGM_WEIGHTS_EMA 1

// The auxiliary network `mod` (exists once a step needed it, when `ema_decay_rate` > 0).
#define UCGM_WEIGHTS_MOD 2

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The ABI version of the library (compare with `UCGM_ABI_VERSION`).
UCGM_API uint32_t ucgm_abi_version(void);

// The library version, e.g. "0.1.0" (static text).
UCGM_API const char *ucgm_version(void);

// Static text for a status ("ok", "invalid argument", ...; "unknown status" for a value
// this library does not know). Never NULL.
UCGM_API const char *ucgm_status_str(ucgm_status status);

// The detail of the last failed call made on this thread ("" after a call that
// succeeded), at most 4095 bytes of UTF-8. The pointer is the same for the life of
// the thread; the text changes with every library call on the thread. Never NULL.
UCGM_API const char *ucgm_last_error_message(void);

// `UCGM_STATUS_OK` when `backend` (a `UCGM_BACKEND_*` value) can be used; otherwise
// `UCGM_STATUS_BACKEND` with the reason in `ucgm_last_error_message()` (or
// `UCGM_STATUS_INVALID_ARGUMENT` for an unknown value). For CUDA this loads the driver,
// NVRTC and cuBLAS and opens device 0 (it never fails the process: a missing library is
// a status, not a crash); `UCGM_BACKEND_AUTO` is always available.
UCGM_API ucgm_status ucgm_backend_available(ucgm_backend backend);

// Static name of a backend value ("auto", "cpu", "cuda"; "unknown" otherwise).
UCGM_API const char *ucgm_backend_name(ucgm_backend backend);

// Fills `info` (set `info->struct_size = sizeof *info` first). CUDA is probed once per
// process, at the first call of this function or of `ucgm_system_info_string`.
UCGM_API ucgm_status ucgm_get_system_info(struct ucgm_system_info *info);

// One static line describing the library and the machine, e.g.
// "ucgm 0.1.0 | abi 1 | cpus 16 | simd SSE2 AVX AVX2 FMA AVX512F | backends cpu cuda (cuda:0
// NVIDIA H200 (sm_90, 139.8 GiB, 1 device(s)))", or on a machine without CUDA
// "… | backends cpu (cuda unavailable: the CUDA driver library (libcuda.so) not found …)".
UCGM_API const char *ucgm_system_info_string(void);

// Fills `comm` (a struct of `struct_size` bytes, normally `sizeof *comm`) with the
// defaults: rank 0 of 1, no callbacks, `timeout_seconds` 300.
UCGM_API ucgm_status ucgm_communicator_default(struct ucgm_communicator *comm, size_t struct_size);

// Makes `trainer` one rank of the host's process group `comm` (copied; NULL returns the
// trainer to a single process). Every rank must hold the same trainer state (the same
// creation arguments, seed and checkpoint). Fails on a rank not below `world` or a
// missing callback when `world` > 1.
UCGM_API ucgm_status ucgm_trainer_set_communicator(struct ucgm_trainer *trainer, const struct ucgm_communicator *comm);

// One data-parallel UCGM-T step: call it on every rank of the trainer's communicator
// with that rank's slice of a global batch of `global_batch` samples — the contiguous
// samples `[rank·⌊B/W⌋ + min(rank, B mod W), …)`, `⌊B/W⌋` of them plus one on the first
// `B mod W` ranks. Times and noise are drawn for the whole global batch from the
// trainer's stream (identical on every rank), label dropping and the loss mean follow
// the global batch, and the gradients are summed with the communicator's
// `all_reduce_f32`, so every rank takes the same update and the result equals
// `ucgm_train_step` on the whole batch up to the summation order.
// * `x` — `[batch, C, H, W]` this rank's samples; `labels` — `[batch]` in 0..=K;
// * `loss` — NULL, or receives the loss of the global batch.
//
// Without a communicator (or with world 1) this is `ucgm_train_step` with
// `batch == global_batch`.
UCGM_API ucgm_status ucgm_train_step_part(struct ucgm_trainer *trainer, const float *x, const int32_t *labels, size_t batch, size_t global_batch, double *loss);

// Loads the FID Inception from a safetensors file converted from pytorch-fid's
// `pt_inception-2015-12-05-6726825d.pth` by `scripts/convert_inception.py` (BatchNorm
// is folded into the convolutions here) and stores the handle in `*out` (NULL on
// failure). `params` may be NULL (defaults); only its backend fields and log callback
// are read. `mode` is a `UCGM_INCEPTION_*` value. Fails with `UCGM_STATUS_IO`,
// `UCGM_STATUS_FORMAT` (not a safetensors file) or `UCGM_STATUS_WEIGHTS` (tensors
// missing, mis-shaped or not finite: not an FID Inception file).
UCGM_API ucgm_status ucgm_inception_load(const char *path, const struct ucgm_model_params *params, ucgm_inception_mode mode, struct ucgm_inception **out);

// Releases an Inception handle. NULL is a no-op. No call may be running on the handle.
UCGM_API void ucgm_inception_free(struct ucgm_inception *net);

// Sets (or with NULL clears) the handle's log callback.
UCGM_API ucgm_status ucgm_inception_set_log_callback(struct ucgm_inception *net, ucgm_log_callback callback, void *user_data);

// pool3 features and logits of a batch of images.
// * `images` — `[n, 3, h, w]` RGB in [0, 1] (any size; resized to 299×299 inside);
//   values outside [0, 1] or not finite are `UCGM_STATUS_INVALID_ARGUMENT` /
//   `UCGM_STATUS_NON_FINITE`;
// * `out_pool3` — `[n, 2048]`; `out_pool3_len` = n·2048;
// * `out_logits` — NULL, or `[n, 1008]`: the `fc` logits without its bias
//   (torch-fidelity's `logits_unbiased`, which its Inception Score and
//   `ucgm_inception_score` take); `out_logits_len` = n·1008 (ignored when NULL).
UCGM_API ucgm_status ucgm_inception_features(struct ucgm_inception *net, const float *images, size_t n, size_t h, size_t w, float *out_pool3, size_t out_pool3_len, float *out_logits, size_t out_logits_len);

// Makes empty streaming statistics of `dim`-vectors (1 ≤ dim ≤
// `UCGM_FID_STATS_MAX_DIM`; 2048 for pool3) in `*out`: float64 mean and scatter,
// memory `dim² · 8` bytes whatever the number of vectors added.
UCGM_API ucgm_status ucgm_fid_stats_new(size_t dim, struct ucgm_fid_stats **out);

// Reads statistics (`mu` `[D]`, `sigma` `[D, D]`, float32 or float64) from a `.npz`
// as pytorch-fid writes them and ADM ships them, into a new handle in `*out`. Such a
// handle takes no more features. Fails with `UCGM_STATUS_IO` or `UCGM_STATUS_FORMAT`
// (not a zip, arrays missing, wrong shapes, non-finite or asymmetric sigma).
UCGM_API ucgm_status ucgm_fid_stats_load_npz(const char *path, struct ucgm_fid_stats **out);

// Releases a statistics handle. NULL is a no-op.
UCGM_API void ucgm_fid_stats_free(struct ucgm_fid_stats *stats);

// Adds `n` feature vectors `features` `[n, dim]` (finite). A non-finite value leaves
// the statistics unchanged and fails with `UCGM_STATUS_NON_FINITE`; a handle read from
// a `.npz` fails with `UCGM_STATUS_INVALID_ARGUMENT`.
UCGM_API ucgm_status ucgm_fid_stats_add(struct ucgm_fid_stats *stats, const float *features, size_t n);

// Adds `n` float64 feature vectors `features` `[n, dim]` (finite), as
// `ucgm_fid_stats_add` (for features kept in double precision).
UCGM_API ucgm_status ucgm_fid_stats_add_f64(struct ucgm_fid_stats *stats, const double *features, size_t n);

// Stores the number of vectors added in `*out_count` (0 for a handle read from a `.npz`,
// whose count is not recorded) and the dimension in `*out_dim`; either may be NULL.
UCGM_API ucgm_status ucgm_fid_stats_get_count(struct ucgm_fid_stats *stats, uint64_t *out_count, uint64_t *out_dim);

// Writes the mean and unbiased covariance as a `.npz` (`mu`, `sigma`, float64, as
// `np.savez`), atomically. Streaming statistics need at least 2 vectors.
UCGM_API ucgm_status ucgm_fid_stats_save_npz(struct ucgm_fid_stats *stats, const char *path);

// The Fréchet distance between the Gaussians of two statistics handles (the same
// dimension; streaming ones with at least 2 vectors) in `*out` — the FID when both
// hold pool3 statistics. `a` and `b` may be the same handle.
UCGM_API ucgm_status ucgm_fid_distance(struct ucgm_fid_stats *a, struct ucgm_fid_stats *b, double *out);

// The Inception Score of `logits` `[n, 1008]` (finite; `ucgm_inception_features`'
// `out_logits`) in `splits` contiguous splits (1 ≤ splits ≤ n; the field uses 10):
// the mean and the population standard deviation of the split scores.
UCGM_API ucgm_status ucgm_inception_score(const float *logits, size_t n, size_t splits, double *out_mean, double *out_std);

// Sets how the model's latents are normalised, replacing what its file said:
// * `UCGM_LATENT_NORM_NONE` — raw latents; `multiplier` and `channels` are ignored;
// * `UCGM_LATENT_NORM_SCALE` — x = `multiplier` · z (SD-VAE: `UCGM_SD_VAE_MULTIPLIER`);
//   `channels` is ignored;
// * `UCGM_LATENT_NORM_STATS` — `x = (z − mean[c]) / std[c] · multiplier` (VA-VAE,
//   E2E-VAE: multiplier 1; `ucgm_model_load_latent_stats` reads the reference's
//   statistics file instead): `mean`, `std` — `[channels]`, `channels` = the model's
//   `in_channels`.
//
// `mean` and `std` must be NULL for the other kinds. `multiplier` must be finite and
// non-zero, every `std` finite and positive. Fails with `UCGM_STATUS_INVALID_ARGUMENT`
// (an unknown kind, a NULL or wrong-length buffer, a zero multiplier or a std ≤ 0) or
// `UCGM_STATUS_NON_FINITE` (NaN or infinity); the handle keeps its previous
// normalisation then. `ucgm_sample_image` inverts it; `ucgm_model_save` stores it.
UCGM_API ucgm_status ucgm_model_set_latent_norm(struct ucgm_model *model, ucgm_latent_norm_kind kind, float multiplier, const float *mean, const float *std, size_t channels);

// Sets per-channel statistics (`UCGM_LATENT_NORM_STATS`) from a statistics file: the
// reference's `buffers/vaes/stat/{vae}_{res}.pt` converted to safetensors
// (`scripts/convert_vae.py stats`), tensors `mean` and `std` of shape `[1, C, 1, 1]` or
// `[C]` with C = the model's `in_channels`; `multiplier` as in the run's config (1 for
// VA-VAE / E2E-VAE). Fails with `UCGM_STATUS_IO` (missing / unreadable),
// `UCGM_STATUS_FORMAT` (not safetensors, a tensor missing or mis-shaped, a std ≤ 0 or
// a non-finite value) or `UCGM_STATUS_INVALID_ARGUMENT` (NULL path, a zero multiplier,
// statistics for another channel count); the handle keeps its previous normalisation
// then.
UCGM_API ucgm_status ucgm_model_load_latent_stats(struct ucgm_model *model, const char *path, float multiplier);

// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
// defaults: a TiT-S/2-shaped network on a 4×32×32 input with 1000 classes, seed 0,
// automatic backend (CUDA device 0 if usable, TF32 off), one thread per logical CPU, no
// log callback.
UCGM_API ucgm_status ucgm_model_params_default(struct ucgm_model_params *params, size_t struct_size);

// Creates a model with the reference's from-scratch initialisation (seeded; a fresh
// network outputs F = 0) and stores the handle in `*out` (NULL on failure).
UCGM_API ucgm_status ucgm_model_create(const struct ucgm_model_params *params, struct ucgm_model **out);

// Loads a safetensors weights file (written by `ucgm_model_save`, `ucgm export` or
// converted from a reference checkpoint) or a training checkpoint (`ucgm train`, the
// demo, `ucgm_trainer_save`: its sampling EMA unless `checkpoint_weights` says
// otherwise) and stores the handle in `*out` (NULL on failure). `params` may be NULL
// (defaults); only `heads`, `checkpoint_weights`, the backend fields (`backend`,
// `threads`, `cuda_device`, `tf32`, `bf16`) and the log callback are read. A sampler
// preset stored in the file (see `ucgm_sample`) comes with the model. An EDM2 state
// dict (the reference's tensor names; recognised by its `emb_fourier.freqs`, its
// configuration inferred from the shapes; `heads` and `checkpoint_weights` unused)
// loads as a forward-only `UCGM_ARCH_EDM2` handle sampled with the EDM transport.
// Fails with `UCGM_STATUS_IO` (missing/unreadable), `UCGM_STATUS_FORMAT` (truncated,
// corrupt, or its checksum does not match: damaged data), `UCGM_STATUS_WEIGHTS`
// (tensors that do not form a model, or a checkpoint without the weights asked for),
// `UCGM_STATUS_NON_FINITE` (a weight is NaN or infinite) or
// `UCGM_STATUS_OUT_OF_MEMORY`.
UCGM_API ucgm_status ucgm_model_load(const char *path, const struct ucgm_model_params *params, struct ucgm_model **out);

// Saves the weights as safetensors (reference tensor names, configuration, sampler
// preset, latent normalisation and checksum in the metadata), atomically: on failure
// an existing file at `path` is left unchanged.
UCGM_API ucgm_status ucgm_model_save(struct ucgm_model *model, const char *path);

// Releases a model handle. NULL is a no-op. No call may be running on the handle.
UCGM_API void ucgm_model_free(struct ucgm_model *model);

// Fills `info` (set `info->struct_size = sizeof *info` first).
UCGM_API ucgm_status ucgm_model_get_info(struct ucgm_model *model, struct ucgm_model_info *info);

// Sets (or with NULL clears) the handle's log callback.
UCGM_API ucgm_status ucgm_model_set_log_callback(struct ucgm_model *model, ucgm_log_callback callback, void *user_data);

// Sets (or with NULL clears) the handle's progress callback, called after every
// sampling step.
UCGM_API ucgm_status ucgm_model_set_progress_callback(struct ucgm_model *model, ucgm_progress_callback callback, void *user_data);

// Asks the sampling call running on `model` to stop at its next step; it then fails
// with `UCGM_STATUS_CANCELLED` and the handle stays usable. Callable from any thread at
// any time. The flag is cleared when the next sampling call starts, so a cancel made
// while no call runs has no effect.
UCGM_API ucgm_status ucgm_model_cancel(struct ucgm_model *model);

// One raw network evaluation F(x, t, y) in the network's native time.
// * `x` — `[batch, C, H, W]` input;
// * `t` — `[batch]` times (finite);
// * `labels` — `[batch]` classes in 0..=K (K = `num_classes` = the null class);
// * `out` — `[batch, C, H, W]` output; `out_len` must be batch·C·H·W.
UCGM_API ucgm_status ucgm_forward(struct ucgm_model *model, const float *x, const float *t, const int32_t *labels, size_t batch, float *out, size_t out_len);

// Copies the flat parameter vector (`param_count` values, in the model's layout order:
// the order of the tensors in a saved file) into `out`; `out_len` = `param_count`.
UCGM_API ucgm_status ucgm_model_read_params(struct ucgm_model *model, float *out, size_t out_len);

// Overwrites the parameters with `len` = `param_count` finite values in the order of
// `ucgm_model_read_params`.
UCGM_API ucgm_status ucgm_model_write_params(struct ucgm_model *model, const float *values, size_t len);

// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
// defaults listed at `ucgm_sample_params`.
UCGM_API ucgm_status ucgm_sample_params_default(struct ucgm_sample_params *params, size_t struct_size);

// Stores in `*len` the elements a trajectory buffer for `params` needs:
// (n + 1)·batch·C·H·W, n = grid points.
UCGM_API ucgm_status ucgm_sample_trajectory_len(struct ucgm_model *model, const struct ucgm_sample_params *params, size_t *len);

// Samples one image of a random class with the model's sampler preset — the one stored
// in its file (see `ucgm_model_get_sample_params`), else the defaults of
// `ucgm_sample_params_default` (with the EDM transport for a `UCGM_ARCH_EDM2` model) —
// and `steps` steps (0 = the preset's steps; 35 without a preset). The seed is the handle's: each call uses it and then advances it by one,
// so successive calls give different images and a handle reseeded with
// `ucgm_model_set_seed` repeats its sequence. `out`: `[1, C, H, W]`, `out_len` = C·H·W.
// `steps` above `UCGM_MAX_STEPS` fails with `UCGM_STATUS_INVALID_ARGUMENT`.
UCGM_API ucgm_status ucgm_sample(struct ucgm_model *model, uint32_t steps, float *out, size_t out_len);

// Sets the seed of the next `ucgm_sample` call on this handle (a new handle starts at
// 0); each `ucgm_sample` call then advances it by one. `ucgm_sample_ext` takes its seed
// from its params and leaves this one alone.
UCGM_API ucgm_status ucgm_model_set_seed(struct ucgm_model *model, uint64_t seed);

// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
// settings this model is meant to be sampled with: its sampler preset (stored in the
// weights file or checkpoint it was loaded from, or set with
// `ucgm_model_set_sample_params`), else the defaults of `ucgm_sample_params_default`
// (with the EDM transport for a `UCGM_ARCH_EDM2` model); `seed` is the handle's next seed, batch 1, no buffers. Stores in `*has_preset` (may be
// NULL) 1 when the model has a preset, else 0.
UCGM_API ucgm_status ucgm_model_get_sample_params(struct ucgm_model *model, struct ucgm_sample_params *params, size_t struct_size, int32_t *has_preset);

// Sets (or with NULL clears) the model's sampler preset from the sampler settings of
// `params` (transport, steps, order, stochasticity, ρ, κ, time warp, gaps, guidance; the
// batch, seed and buffer fields are ignored). `ucgm_sample` then uses it and
// `ucgm_model_save` stores it in the file.
UCGM_API ucgm_status ucgm_model_set_sample_params(struct ucgm_model *model, const struct ucgm_sample_params *params);

// Samples with every UCGM-S setting.
// * `out` — `[batch, C, H, W]` samples (the last raw x̂); `out_len` = batch·C·H·W;
// * `trajectory` — NULL, or `[n + 1, batch, C, H, W]`: entry 0 is z, entry i + 1 the
//   raw x̂ of step i; `trajectory_len` from `ucgm_sample_trajectory_len`;
// * `info` — NULL, or filled with the evaluation counts.
//
// Reports progress after every step and stops with `UCGM_STATUS_CANCELLED` when the
// progress callback returns non-zero or `ucgm_model_cancel` is called.
UCGM_API ucgm_status ucgm_sample_ext(struct ucgm_model *model, const struct ucgm_sample_params *params, float *out, size_t out_len, float *trajectory, size_t trajectory_len, struct ucgm_sample_info *info);

// Static name of a transport value ("Linear", "ReLinear", "TrigFlow", "TrigLinear",
// "Random", "EDM"; "unknown" otherwise).
UCGM_API const char *ucgm_transport_name(ucgm_transport transport);

// Samples `n` images with the model's sampler preset (as `ucgm_sample`; `steps` 0 = the
// preset's) and decodes them with `vae` into caller memory, in one call.
// * `labels` — `[n]` classes in 0..=K (K = the null class), or NULL: random classes;
// * `seed` — NULL: the handle's seed, which then advances by one as with `ucgm_sample`;
//   else the seed of this call (the handle's is left alone);
// * `out` — `[n, 3, H·f, W·f]` float NCHW, u = clamp((x + 1)/2, 0, 1) of the decoded x;
//   `out_len` = n·3·(H·f)·(W·f) (H = W = the model's input size, f = the VAE's factor).
//
// The model's latent normalisation (the `ucgm_latent_norm` metadata of its file:
// SD-VAE ×0.18215, VA-VAE statistics; or what `ucgm_model_set_latent_norm` /
// `ucgm_model_load_latent_stats` set) is inverted before decoding; a model without one
// is taken to sample raw latents. `ucgm_model_cancel` / the model's progress callback
// cover the sampling, `ucgm_vae_cancel` / the VAE's the decoding.
UCGM_API ucgm_status ucgm_sample_image(struct ucgm_model *model, struct ucgm_vae *vae, uint32_t steps, const int32_t *labels, size_t n, const uint64_t *seed, float *out, size_t out_len);

// As `ucgm_sample_image`, into 8-bit interleaved RGB:
// * `out` — `[n, H·f, W·f, 3]` bytes, floor(u·255 + 0.5) of u = clamp((x + 1)/2, 0, 1)
//   (torchvision's `save_image` of the reference's decoded samples); `out_len` =
//   n·(H·f)·(W·f)·3.
UCGM_API ucgm_status ucgm_sample_image_rgb8(struct ucgm_model *model, struct ucgm_vae *vae, uint32_t steps, const int32_t *labels, size_t n, const uint64_t *seed, uint8_t *out, size_t out_len);

// Fills `params` (a struct of `struct_size` bytes, normally `sizeof *params`) with the
// defaults listed at `ucgm_train_params`.
UCGM_API ucgm_status ucgm_train_params_default(struct ucgm_train_params *params, size_t struct_size);

// Creates a trainer over a copy of `model`'s weights (the model handle is not changed
// by training) and stores it in `*out` (NULL on failure). The sampling EMA starts as an
// exact copy of the weights. The trainer runs on the model's kind of backend with the
// same settings (CPU threads, or CUDA device and TF32), but its own pool or stream. The
// new handle has no callbacks (callbacks are never copied between handles); the
// creation is logged to the model's log callback. A `UCGM_ARCH_EDM2` model (forward
// only) fails with `UCGM_STATUS_UNSUPPORTED`.
UCGM_API ucgm_status ucgm_trainer_create(struct ucgm_model *model, const struct ucgm_train_params *params, struct ucgm_trainer **out);

// Continues a run from a checkpoint written by `ucgm_trainer_save_checkpoint` exactly
// (configuration, weights, EMA, `mod`, optimizer state, step count, random stream).
// `model_params` may be NULL; only its backend fields (`backend`, `threads`,
// `cuda_device`, `tf32`) and log callback are read.
UCGM_API ucgm_status ucgm_trainer_resume(const char *path, const struct ucgm_model_params *model_params, struct ucgm_trainer **out);

// Starts a new run from a checkpoint with new settings (the reference's `train.ckpt`):
// online and EMA weights are loaded, the optimizer state unless `no_reopt`, `mod`
// unless `no_reuni`; the step count continues, the random stream starts from `seed`.
UCGM_API ucgm_status ucgm_trainer_create_from_checkpoint(const char *path, const struct ucgm_train_params *params, const struct ucgm_model_params *model_params, struct ucgm_trainer **out);

// Releases a trainer handle. NULL is a no-op. No call may be running on the handle.
UCGM_API void ucgm_trainer_free(struct ucgm_trainer *trainer);

// Fills `info` (set `info->struct_size = sizeof *info` first).
UCGM_API ucgm_status ucgm_trainer_get_info(struct ucgm_trainer *trainer, struct ucgm_trainer_info *info);

// One UCGM-T step on a batch, with t and z drawn from the trainer's seeded stream.
// * `x` — `[batch, C, H, W]` training data (finite);
// * `labels` — `[batch]` classes in 0..=K (K = null class, unconditional);
// * `loss` — NULL, or receives the batch loss. It can be non-finite only where the
//   reference's is (e.g. t = 0 with λ ≠ 0); the gradient is then zeroed, as there.
UCGM_API ucgm_status ucgm_train_step(struct ucgm_trainer *trainer, const float *x, const int32_t *labels, size_t batch, double *loss);

// One UCGM-T step with the caller's times and noise instead of the trainer's draws.
// * `x`, `labels`, `loss` — as `ucgm_train_step`;
// * `t` — `[batch]` training times in [0, 1], internal time (0 = data, 1 = noise);
// * `z` — `[batch, C, H, W]` noise (finite).
UCGM_API ucgm_status ucgm_train_step_with(struct ucgm_trainer *trainer, const float *x, const int32_t *labels, const float *t, const float *z, size_t batch, double *loss);

// `n_batches` UCGM-T steps, one per batch, with the trainer's draws; progress is
// reported after every step, and the call stops with `UCGM_STATUS_CANCELLED` at the
// next step boundary when the progress callback returns non-zero or
// `ucgm_trainer_cancel` is called (the steps already taken stay applied and their
// losses written; `ucgm_trainer_get_info` gives the step count).
// * `x` — `[n_batches, batch, C, H, W]`;
// * `labels` — `[n_batches, batch]` in 0..=K;
// * `losses` — NULL, or `[n_batches]` (`losses_len` = n_batches) receiving each loss.
UCGM_API ucgm_status ucgm_train_steps(struct ucgm_trainer *trainer, const float *x, const int32_t *labels, size_t n_batches, size_t batch, double *losses, size_t losses_len);

// Writes a checkpoint (everything `ucgm_trainer_resume` needs) atomically: on failure
// an existing file at `path` is left unchanged.
UCGM_API ucgm_status ucgm_trainer_save_checkpoint(struct ucgm_trainer *trainer, const char *path);

// Saves the online (`UCGM_WEIGHTS_ONLINE`), sampling-EMA or `mod` weights as a model
// weights file that `ucgm_model_load` reads, atomically.
UCGM_API ucgm_status ucgm_trainer_save_weights(struct ucgm_trainer *trainer, ucgm_weights which, const char *path);

// A new model handle holding a copy of the online, sampling-EMA or `mod` weights (to
// sample during training); stored in `*out` (NULL on failure), on the trainer's kind of
// backend and settings (its own pool or stream) and with no callbacks.
UCGM_API ucgm_status ucgm_trainer_export_model(struct ucgm_trainer *trainer, ucgm_weights which, struct ucgm_model **out);

// Sets (or with NULL clears) the handle's log callback.
UCGM_API ucgm_status ucgm_trainer_set_log_callback(struct ucgm_trainer *trainer, ucgm_log_callback callback, void *user_data);

// Sets (or with NULL clears) the handle's progress callback, called after every step
// of `ucgm_train_steps`.
UCGM_API ucgm_status ucgm_trainer_set_progress_callback(struct ucgm_trainer *trainer, ucgm_progress_callback callback, void *user_data);

// Asks the `ucgm_train_steps` call running on `trainer` to stop at its next step; it
// then fails with `UCGM_STATUS_CANCELLED` and the handle stays usable. Callable from any
// thread at any time; the flag is cleared when the next `ucgm_train_steps` starts.
UCGM_API ucgm_status ucgm_trainer_cancel(struct ucgm_trainer *trainer);

// Loads a safetensors autoencoder in diffusers, pre-0.14 diffusers or LDM/taming names
// (SD-VAE, VA-VAE, E2E-VAE, any configuration its weights imply) and stores the handle
// in `*out` (NULL on failure). `params` may be NULL (defaults); only the backend fields
// (`backend`, `threads`, `cuda_device`, `tf32`, `bf16`) and the log callback are read.
// Fails with `UCGM_STATUS_IO` (missing/unreadable), `UCGM_STATUS_FORMAT` (truncated,
// corrupt, or not an autoencoder's file, e.g. a diffusion model's weights),
// `UCGM_STATUS_WEIGHTS` (an autoencoder's tensors missing or mis-shaped) or
// `UCGM_STATUS_OUT_OF_MEMORY`.
UCGM_API ucgm_status ucgm_vae_load(const char *path, const struct ucgm_model_params *params, struct ucgm_vae **out);

// Releases a VAE handle. NULL is a no-op. No call may be running on the handle.
UCGM_API void ucgm_vae_free(struct ucgm_vae *vae);

// Fills `info` (set `info->struct_size = sizeof *info` first).
UCGM_API ucgm_status ucgm_vae_get_info(struct ucgm_vae *vae, struct ucgm_vae_info *info);

// Sets (or with NULL clears) the handle's log callback.
UCGM_API ucgm_status ucgm_vae_set_log_callback(struct ucgm_vae *vae, ucgm_log_callback callback, void *user_data);

// Sets (or with NULL clears) the handle's progress callback, called after every chunk
// of images an encode or decode call finishes (done, total = images).
UCGM_API ucgm_status ucgm_vae_set_progress_callback(struct ucgm_vae *vae, ucgm_progress_callback callback, void *user_data);

// Asks the encode or decode call running on `vae` to stop at its next chunk of images;
// it then fails with `UCGM_STATUS_CANCELLED` and the handle stays usable. Callable from
// any thread at any time. The flag is cleared when the next encode or decode call
// starts, so a cancel made while no call runs has no effect.
UCGM_API ucgm_status ucgm_vae_cancel(struct ucgm_vae *vae);

// Encodes images into the posterior of the latent.
// * `images` — `[n, in_channels, h, w]` in [−1, 1] (finite); h and w multiples of the
//   downsampling factor f;
// * `out_mean` — `[n, z, h/f, w/f]` posterior mean; `out_mean_len` = n·z·(h/f)·(w/f);
// * `out_logvar` — NULL, or `[n, z, h/f, w/f]` log-variance clamped to [−30, 20];
//   `out_logvar_len` as `out_mean_len` (ignored when `out_logvar` is NULL).
//
// The mean is the raw latent: a diffusion model trained on normalised latents wants
// them normalised (SD-VAE: ×0.18215; VA-VAE: per-channel statistics) first.
UCGM_API ucgm_status ucgm_vae_encode(struct ucgm_vae *vae, const float *images, size_t n, size_t h, size_t w, float *out_mean, size_t out_mean_len, float *out_logvar, size_t out_logvar_len);

// Decodes raw latents (the normalisation of a diffusion model's latents already
// inverted) into images.
// * `latents` — `[n, z, h, w]` (finite);
// * `out` — `[n, out_channels, h·f, w·f]`, nominally in [−1, 1], not clamped; `out_len`
//   = n·out_channels·h·f·w·f.
UCGM_API ucgm_status ucgm_vae_decode(struct ucgm_vae *vae, const float *latents, size_t n, size_t h, size_t w, float *out, size_t out_len);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* UCGM_H */
