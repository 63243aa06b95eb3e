// Attention pieces around the cuBLAS products: q/k preparation (qk-RMSNorm, 2-D RoPE),
// row softmax and its backward, and the q/k gradient post-processing (RoPE transpose,
// qk-RMSNorm backward). Mirrors src/backend/cpu/attention.rs. Products QKᵀ, PV and the
// backward products run as strided-batched sgemm on the host side (ops_attention.rs).
//
// q/k kernels use one warp per (row, head, part ∈ {q, k}); each lane owns the same
// elements in every pass (pairs (2u, 2u+1) when RoPE is on), so in-place updates need no
// cross-lane memory ordering, only the warp-shuffle reductions.

// The final q or k of one (row, head) for lane `lane` of the warp that owns it:
// x̂ = x·(1/rms(x)) if qk_norm, then RoPE if rope; each value goes to store(j, v). Returns
// the 1/rms used (1 without qk_norm). src: the head's dh raw values; c, s: the token's
// RoPE row.
template <class Store>
__device__ float final_qk(const float* src, const float* c, const float* s, i64 dh, i64 qk_norm, i64 rope, int lane, Store store) {
    float r = 1.0f;
    if (qk_norm) {
        float ss = 0.0f;
        for (i64 j = lane; j < dh; j += 32) ss += src[j] * src[j];
        ss = warp_sum(ss);
        r = 1.0f / sqrtf(ss / (float)dh + 1e-6f);
    }
    if (rope) {
        for (i64 u = lane; u < dh / 2; u += 32) {
            const i64 j = 2 * u;
            float a = src[j], b = src[j + 1];
            if (qk_norm) {
                a = a * r;
                b = b * r;
            }
            store(j, a * c[j] - b * s[j]);
            store(j + 1, b * c[j + 1] + a * s[j + 1]);
        }
    } else {
        for (i64 j = lane; j < dh; j += 32) store(j, qk_norm ? src[j] * r : src[j]);
    }
    return r;
}

// Final q and k of every (row, head): x̂ = x·(1/rms(x)) if qk_norm, then RoPE if rope.
// qkv: [bt, 3d] laid out (3, heads, dh) per row; cos, sin: [t, dh];
// qk: [bt, 2d] (q then k, head h at columns h·dh); rms: [bt, heads, 2] (1 without qk_norm).
extern "C" __global__ void attn_prep(const float* qkv, const float* cosv, const float* sinv, float* qk, float* rms, i64 bt, i64 t, i64 heads,
                                     i64 dh, i64 qk_norm, i64 rope) {
    const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    const i64 d = heads * dh;
    const i64 tasks = bt * heads * 2;
    for (i64 task = (((i64)blockIdx.x * blockDim.x) + threadIdx.x) >> 5; task < tasks; task += warps) {
        const i64 part = task % 2, h = (task / 2) % heads, row = task / (2 * heads);
        const float* src = qkv + row * 3 * d + part * d + h * dh;
        float* dst = qk + row * 2 * d + part * d + h * dh;
        const i64 tok = row % t;
        const float r = final_qk(src, cosv + tok * dh, sinv + tok * dh, dh, qk_norm, rope, lane, [&](i64 j, float v) { dst[j] = v; });
        if (lane == 0) rms[(row * heads + h) * 2 + part] = r;
    }
}

// Inference in bf16 mixed precision: the final q, k and the raw v of every (row, head) as
// bf16, laid out like qkv, ready to be the operands of the attention GEMMs (no separate
// conversion pass, no f32 copy). qkv: [bt, 3d] f32; cos, sin: [t, dh]; qkv16: [bt, 3d] bf16.
extern "C" __global__ void attn_prep_bf16(const float* qkv, const float* cosv, const float* sinv, unsigned short* qkv16, i64 bt, i64 t, i64 heads,
                                          i64 dh, i64 qk_norm, i64 rope) {
    const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    const i64 d = heads * dh;
    const i64 tasks = bt * heads * 3;
    for (i64 task = (((i64)blockIdx.x * blockDim.x) + threadIdx.x) >> 5; task < tasks; task += warps) {
        const i64 part = task % 3, h = (task / 3) % heads, row = task / (3 * heads);
        const float* src = qkv + row * 3 * d + part * d + h * dh;
        unsigned short* dst = qkv16 + row * 3 * d + part * d + h * dh;
        if (part == 2) {
            for (i64 j = lane; j < dh; j += 32) dst[j] = bf16_bits(src[j]);
        } else {
            const i64 tok = row % t;
            final_qk(src, cosv + tok * dh, sinv + tok * dh, dh, qk_norm, rope, lane, [&](i64 j, float v) { dst[j] = bf16_bits(v); });
        }
    }
}

// In place, row by row: s ← softmax(scale·s) computed as e^((s − max)·scale) / Σ.
// s: [rows, cols]; one block per row.
extern "C" __global__ void softmax_rows(float* s, i64 rows, i64 cols, float scale) {
    __shared__ float sh[32];
    BLOCK_ROWS(r, rows) {
        float* row = s + r * cols;
        float mx = __int_as_float(0xff800000);
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, row[j]);
        mx = block_max(mx, sh);
        float sum = 0.0f;
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
            const float e = expf((row[j] - mx) * scale);
            row[j] = e;
            sum += e;
        }
        const float inv = 1.0f / block_sum(sum, sh);
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) row[j] = row[j] * inv;
    }
}

// Inference in bf16 mixed precision: p16 = bf16(softmax(scale·s)) row by row, the
// probabilities written once as the bf16 operand of the P·V GEMM (the exponentials are
// recomputed instead of stored: one f32 write and read less). s: [rows, cols] f32;
// p16: [rows, cols] bf16; one block per row.
extern "C" __global__ void softmax_rows_bf16(const float* s, unsigned short* p16, i64 rows, i64 cols, float scale) {
    __shared__ float sh[32];
    BLOCK_ROWS(r, rows) {
        const float* row = s + r * cols;
        unsigned short* out = p16 + r * cols;
        float mx = __int_as_float(0xff800000);
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, row[j]);
        mx = block_max(mx, sh);
        float sum = 0.0f;
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) sum += expf((row[j] - mx) * scale);
        const float inv = 1.0f / block_sum(sum, sh);
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) out[j] = bf16_bits(expf((row[j] - mx) * scale) * inv);
    }
}

// In place: ds ← p ⊙ (ds − Σⱼ p·ds)·scale (softmax backward, with the logit scale).
// p, ds: [rows, cols]; one block per row.
extern "C" __global__ void softmax_bwd_rows(const float* p, float* ds, i64 rows, i64 cols, float scale) {
    __shared__ float sh[32];
    BLOCK_ROWS(r, rows) {
        const float* pr = p + r * cols;
        float* dr = ds + r * cols;
        float acc = 0.0f;
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) acc += pr[j] * dr[j];
        const float dot = block_sum(acc, sh);
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) dr[j] = pr[j] * (dr[j] - dot) * scale;
    }
}

// In place on the q and k parts of dqkv: g ← RoPEᵀ(g) (if rope), then the qk-RMSNorm
// backward g ← r·(g − x·r·mean(g·x·r)) (if qk_norm), x the raw q/k from qkv and r the
// saved 1/rms. qkv, dqkv: [bt, 3d]; cos, sin: [t, dh]; rms: [bt, heads, 2].
extern "C" __global__ void attn_bwd_post(const float* qkv, const float* cosv, const float* sinv, const float* rms, float* dqkv, i64 bt, i64 t,
                                         i64 heads, i64 dh, i64 qk_norm, i64 rope) {
    const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    const i64 d = heads * dh;
    const i64 tasks = bt * heads * 2;
    // Ownership: lane owns units u = lane, lane + 32, …; a unit is a RoPE pair or one element.
    const i64 unit = rope ? 2 : 1;
    const i64 units = dh / unit;
    for (i64 task = (((i64)blockIdx.x * blockDim.x) + threadIdx.x) >> 5; task < tasks; task += warps) {
        const i64 part = task % 2, h = (task / 2) % heads, row = task / (2 * heads);
        float* g = dqkv + row * 3 * d + part * d + h * dh;
        if (rope) {
            const i64 tok = row % t;
            const float* c = cosv + tok * dh;
            const float* s = sinv + tok * dh;
            for (i64 u = lane; u < units; u += 32) {
                const i64 j = 2 * u;
                const float ga = g[j], gb = g[j + 1];
                g[j] = ga * c[j] + gb * s[j + 1];
                g[j + 1] = gb * c[j + 1] - ga * s[j];
            }
        }
        if (qk_norm) {
            const float* x = qkv + row * 3 * d + part * d + h * dh;
            const float r = rms[(row * heads + h) * 2 + part];
            float acc = 0.0f;
            for (i64 u = lane; u < units; u += 32)
                for (i64 e = 0; e < unit; ++e) {
                    const i64 j = u * unit + e;
                    acc += g[j] * x[j] * r;
                }
            const float mean_gy = warp_sum(acc) / (float)dh;
            for (i64 u = lane; u < units; u += 32)
                for (i64 e = 0; e < unit; ++e) {
                    const i64 j = u * unit + e;
                    g[j] = r * (g[j] - x[j] * r * mean_gy);
                }
        }
    }
}
