// LayerNorm / RMSNorm (eps 1e-6, optional learned weight w; w = 0 means none) fused with
// adaLN modulation, DDT's per-head qk RMSNorm, and the backward passes. Mirrors src/backend/cpu/norm.rs. One block per row for the row
// statistics (fixed-order block reductions); one thread per (sample, column) walking the
// tokens in order for the shift/scale gradients.

#define NORM_EPS 1e-6f

// y[r, :] = norm(x[r, :])·(1 + ada[r/t, scale_col..]) + ada[r/t, shift_col..];
// stats[r] = (mean, 1/σ) (LayerNorm) or (0, 1/rms) (RMSNorm), written if `stats` ≠ 0.
// x, y: [rows, d]; ada: [rows/t, stride]; stats: [rows, 2]. rms: 1 = RMSNorm.
extern "C" __global__ void norm_mod_fwd(const float* x, const float* w, const float* ada, float* y, float* stats, i64 rows, i64 t, i64 d,
                                        i64 stride, i64 shift_col, i64 scale_col, i64 rms) {
    __shared__ float sh[32];
    const float fd = (float)d;
    BLOCK_ROWS(r, rows) {
        const float* xr = x + r * d;
        const float* shift_p = ada + (r / t) * stride + shift_col;
        const float* scale_p = ada + (r / t) * stride + scale_col;
        float mean = 0.0f, var;
        if (!rms) {
            float s = 0.0f;
            for (i64 j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
            mean = block_sum(s, sh) / fd;
            float q = 0.0f;
            for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
                const float c = xr[j] - mean;
                q += c * c;
            }
            var = block_sum(q, sh) / fd;
        } else {
            float q = 0.0f;
            for (i64 j = threadIdx.x; j < d; j += blockDim.x) q += xr[j] * xr[j];
            var = block_sum(q, sh) / fd;
        }
        const float rstd = 1.0f / sqrtf(var + NORM_EPS);
        float* yr = y + r * d;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
            const float wj = w != 0 ? w[j] : 1.0f;
            yr[j] = (xr[j] - mean) * rstd * wj * (1.0f + scale_p[j]) + shift_p[j];
        }
        if (stats != 0 && threadIdx.x == 0) {
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
        }
    }
}

// dx[r, :] += rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·(1 + scale) (mean(g) only for
// LayerNorm). dy, x, dx: [rows, d]; stats: [rows, 2]; inv_d = 1/d rounded to f32.
// g is rounded once (__fmul_rn: never fused into an FMA): g − mean(g) must cancel exactly
// where it does in exact arithmetic (d = 1, equal inputs), because rstd = 1/√eps = 1000
// there amplifies any residue; an FMA-fused g would leave its rounding error behind.
extern "C" __global__ void norm_mod_bwd_dx(const float* dy, const float* x, const float* w, const float* ada, const float* stats, float* dx,
                                           i64 rows, i64 t, i64 d, i64 stride, i64 scale_col, i64 layer_norm, float inv_d) {
    __shared__ float sh[32];
    BLOCK_ROWS(r, rows) {
        const float* xr = x + r * d;
        const float* dyr = dy + r * d;
        const float* scale_p = ada + (r / t) * stride + scale_col;
        const float mean = stats[2 * r], rstd = stats[2 * r + 1];
        float sg = 0.0f, sgx = 0.0f;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
            const float g = __fmul_rn(__fmul_rn(dyr[j], 1.0f + scale_p[j]), w != 0 ? w[j] : 1.0f);
            sg += g;
            sgx += g * (xr[j] - mean) * rstd;
        }
        const float sum_g = block_sum(sg, sh);
        const float sum_gx = block_sum(sgx, sh);
        const float mean_g = layer_norm ? sum_g * inv_d : 0.0f;
        const float mean_gx = sum_gx * inv_d;
        float* dxr = dx + r * d;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
            const float g = __fmul_rn(__fmul_rn(dyr[j], 1.0f + scale_p[j]), w != 0 ? w[j] : 1.0f);
            const float xh = (xr[j] - mean) * rstd;
            dxr[j] = dxr[j] + rstd * (g - mean_g - xh * mean_gx);
        }
    }
}

// dada[bi, shift_col + j] += Σₜ dy; dada[bi, scale_col + j] += Σₜ dy·x̂, tokens in order
// onto the existing values. One thread per (bi, j): n = b·d.
extern "C" __global__ void norm_mod_bwd_ada(const float* dy, const float* x, const float* w, const float* stats, float* dada, i64 n, i64 t,
                                            i64 d, i64 stride, i64 shift_col, i64 scale_col) {
    GRID_STRIDE(i, n) {
        const i64 bi = i / d, j = i % d;
        const float wj = w != 0 ? w[j] : 1.0f;
        float ds = dada[bi * stride + shift_col + j];
        float dc = dada[bi * stride + scale_col + j];
        for (i64 k = 0; k < t; ++k) {
            const i64 r = bi * t + k;
            const float xh = (x[r * d + j] - stats[2 * r]) * stats[2 * r + 1];
            const float g = dy[r * d + j];
            ds = ds + g;
            dc = dc + g * xh * wj;
        }
        dada[bi * stride + shift_col + j] = ds;
        dada[bi * stride + scale_col + j] = dc;
    }
}

// dw[j] += Σ_r dy[r, j]·(1 + ada[r/t, scale_col + j])·x̂[r, j], rows in order: the norm
// weight's gradient. One thread per column j. dy, x: [rows, d]; stats: [rows, 2].
extern "C" __global__ void norm_weight_bwd(const float* dy, const float* x, const float* ada, const float* stats, float* dw, i64 rows, i64 t,
                                           i64 d, i64 stride, i64 scale_col) {
    GRID_STRIDE(j, d) {
        float acc = dw[j];
        for (i64 r = 0; r < rows; ++r) {
            const float xh = (x[r * d + j] - stats[2 * r]) * stats[2 * r + 1];
            acc = acc + __fmul_rn(__fmul_rn(dy[r * d + j], 1.0f + ada[(r / t) * stride + scale_col + j]), xh);
        }
        dw[j] = acc;
    }
}

// DDT qk-norm, in place on `out` (a copy of qkv [n, 3·heads·dh]): one block per (row, part,
// head) with part 0 = q, 1 = k; out ← out·(1/rms)·w[part·dh..]; stats[r, part·heads + h] =
// 1/rms when stats ≠ 0. qkw: [2·dh].
extern "C" __global__ void qk_norm_fwd(float* out, const float* qkw, float* stats, i64 n, i64 heads, i64 dh) {
    __shared__ float sh[32];
    BLOCK_ROWS(g, n * 2 * heads) {
        const i64 r = g / (2 * heads), ph = g % (2 * heads);
        float* row = out + r * 3 * heads * dh + ph * dh;
        const float* w = qkw + (ph / heads) * dh;
        float q = 0.0f;
        for (i64 j = threadIdx.x; j < dh; j += blockDim.x) q += row[j] * row[j];
        const float ms = block_sum(q, sh) / (float)dh;
        const float ri = 1.0f / sqrtf(ms + NORM_EPS);
        for (i64 j = threadIdx.x; j < dh; j += blockDim.x) row[j] = __fmul_rn(row[j] * ri, w[j]);
        if (stats != 0 && threadIdx.x == 0) stats[g] = ri;
    }
}

// Backward of qk_norm_fwd, in place on `g` (a copy of dout [n, 3·heads·dh]): each q/k head
// becomes ri·(dout⊙w − x̂·mean(dout⊙w⊙x̂)). qkv: the forward input.
extern "C" __global__ void qk_norm_bwd_dx(float* g, const float* qkv, const float* qkw, const float* stats, i64 n, i64 heads, i64 dh,
                                          float inv_d) {
    __shared__ float sh[32];
    BLOCK_ROWS(k, n * 2 * heads) {
        const i64 r = k / (2 * heads), ph = k % (2 * heads);
        float* gr = g + r * 3 * heads * dh + ph * dh;
        const float* x = qkv + r * 3 * heads * dh + ph * dh;
        const float* w = qkw + (ph / heads) * dh;
        const float ri = stats[k];
        float s = 0.0f;
        for (i64 j = threadIdx.x; j < dh; j += blockDim.x) s += gr[j] * w[j] * x[j] * ri;
        const float mean_gx = block_sum(s, sh) * inv_d;
        for (i64 j = threadIdx.x; j < dh; j += blockDim.x) gr[j] = ri * (gr[j] * w[j] - x[j] * ri * mean_gx);
    }
}

// dqkw[part·dh + j] += Σ_r Σ_h dout·x̂ (rows, then heads, in order). One thread per
// (part, j): 2·dh threads.
extern "C" __global__ void qk_norm_bwd_w(const float* dout, const float* qkv, const float* stats, float* dqkw, i64 n, i64 heads, i64 dh) {
    GRID_STRIDE(i, 2 * dh) {
        const i64 part = i / dh, j = i % dh;
        float acc = dqkw[i];
        for (i64 r = 0; r < n; ++r) {
            for (i64 h = 0; h < heads; ++h) {
                const i64 at = r * 3 * heads * dh + part * heads * dh + h * dh + j;
                acc = acc + dout[at] * qkv[at] * stats[r * 2 * heads + part * heads + h];
            }
        }
        dqkw[i] = acc;
    }
}

// EDM2 `normalize` of rows: y[r, :] = x[r, :] / (1e-4 + alpha·‖x[r, :]‖), alpha = 1/√n
// rounded to f32. One block per row. x, y: [rows, n].
extern "C" __global__ void mp_normalize_rows(const float* x, float* y, i64 rows, i64 n, float alpha) {
    __shared__ float sh[32];
    BLOCK_ROWS(r, rows) {
        const float* xr = x + r * n;
        float q = 0.0f;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) q += xr[j] * xr[j];
        const float norm = sqrtf(block_sum(q, sh));
        const float d = 1e-4f + alpha * norm;
        float* yr = y + r * n;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) yr[j] = xr[j] / d;
    }
}

// x ← clamp(x, −lim, lim); NaN stays NaN (comparisons with NaN are false).
extern "C" __global__ void clamp(float* x, i64 n, float lim) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        x[i] = v < -lim ? -lim : (v > lim ? lim : v);
    }
}
