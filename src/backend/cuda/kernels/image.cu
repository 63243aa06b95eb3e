// Image ops of the convolutional networks (VAE, FID Inception, UNet): im2col for the
// convolution GEMMs, per-channel bias, GroupNorm (+ SiLU), nearest ×2 upsampling and the
// batched transpose NCHW ↔ token rows. Mirrors src/backend/cpu/{conv,group_norm,image_layout}.rs.

// col[b, (ci, ky, kx), (r, ox)] = x[b, ci, (r0 + r)·sh + ky − pt, ox·sw + kx − pl], 0 outside
// the image. x: [nb, c_in, h, w]; col: [nb, c_in·kh·kw, nr·ow]; total = nb·c_in·kh·kw·nr·ow.
extern "C" __global__ void im2col(const float* x, float* col, i64 total, i64 c_in, i64 h, i64 w, i64 kh, i64 kw, i64 sh, i64 sw, i64 pt,
                                  i64 pl, i64 ow, i64 r0, i64 nr) {
    const i64 tp = nr * ow, kk = c_in * kh * kw;
    GRID_STRIDE(i, total) {
        const i64 j = i % tp;
        const i64 kr = (i / tp) % kk;
        const i64 b = i / (tp * kk);
        const i64 ci = kr / (kh * kw), ky = (kr / kw) % kh, kx = kr % kw;
        const i64 iy = (r0 + j / ow) * sh + ky - pt;
        const i64 ix = (j % ow) * sw + kx - pl;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[((b * c_in + ci) * h + iy) * w + ix];
        col[i] = v;
    }
}

// y[b, ch, p] = bias[ch]. y: [nb, c, p]; total = nb·c·p.
extern "C" __global__ void bias_channels(const float* bias, float* y, i64 total, i64 c, i64 p) {
    GRID_STRIDE(i, total) { y[i] = bias[(i / p) % c]; }
}

// GroupNorm over rows = n·groups groups of cg·hw consecutive elements, affine per channel,
// then SiLU if `silu`. x, y: [n, groups·cg, hw]; gamma, beta: [groups·cg]. One block per
// group; statistics in double with fixed-order block reductions (mean, then the centred
// sum of squares).
extern "C" __global__ void group_norm_fwd(const float* x, const float* gamma, const float* beta, float* y, i64 rows, i64 groups, i64 cg,
                                          i64 hw, float eps, i64 silu) {
    __shared__ double sh[32];
    const i64 len = cg * hw;
    BLOCK_ROWS(r, rows) {
        const float* xr = x + r * len;
        double s = 0.0;
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) s += (double)xr[j];
        const double mean = block_sum_d(s, sh) / (double)len;
        double q = 0.0;
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {
            const double c = (double)xr[j] - mean;
            q += c * c;
        }
        const double var = block_sum_d(q, sh) / (double)len;
        const double rstd = 1.0 / sqrt(var + (double)eps);
        const i64 g = r % groups;
        float* yr = y + r * len;
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {
            const i64 ch = g * cg + j / hw;
            // Centred first (as the CPU): equal elements give beta exactly.
            const float t = __fmul_rn(xr[j] - (float)mean, (float)((double)gamma[ch] * rstd)) + beta[ch];
            yr[j] = silu ? t * sigmoidf_(t) : t;
        }
    }
}

// y[pl, oy, ox] = x[pl, oy/2, ox/2]. x: [planes, h, w]; y: [planes, 2h, 2w]; total = planes·4hw.
extern "C" __global__ void upsample_nearest2x(const float* x, float* y, i64 total, i64 h, i64 w) {
    GRID_STRIDE(i, total) {
        const i64 pl = i / (4 * h * w), rem = i % (4 * h * w);
        const i64 oy = rem / (2 * w), ox = rem % (2 * w);
        y[i] = x[pl * h * w + (oy / 2) * w + ox / 2];
    }
}

// y[b, c, r] = x[b, r, c]. x: [batch, rows, cols]; y: [batch, cols, rows]; total = batch·rows·cols.
extern "C" __global__ void transpose_batched(const float* x, float* y, i64 total, i64 rows, i64 cols) {
    GRID_STRIDE(i, total) {
        const i64 m = rows * cols, b = i / m, rem = i % m;
        const i64 c = rem / rows, r = rem % rows;
        y[i] = x[b * m + r * cols + c];
    }
}
