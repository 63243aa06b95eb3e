// Image ops of the convolutional networks (VAE, FID Inception, UNet): im2col for the
// convolution GEMMs, per-channel bias, GroupNorm (+ SiLU), nearest ×2 upsampling and the
// batched transpose NCHW ↔ token rows. Mirrors src/backend/cpu/{conv,group_norm,image_layout}.rs.

// col[b, (ci, ky, kx), (r, ox)] = x[b, ci, (r0 + r)·sh + ky − pt, ox·sw + kx − pl], 0 outside
// the image. x: planes [h, w], plane (b, ci) at index b·xi + ci·xc (NCHW: xi = c_in, xc = 1);
// col: [nb, c_in·kh·kw, nr·ow]; total = nb·c_in·kh·kw·nr·ow.
extern "C" __global__ void im2col(const float* x, float* col, i64 total, i64 c_in, i64 h, i64 w, i64 kh, i64 kw, i64 sh, i64 sw, i64 pt,
                                  i64 pl, i64 ow, i64 r0, i64 nr, i64 xi, i64 xc) {
    const i64 tp = nr * ow, kk = c_in * kh * kw;
    GRID_STRIDE(i, total) {
        const i64 j = i % tp;
        const i64 kr = (i / tp) % kk;
        const i64 b = i / (tp * kk);
        const i64 ci = kr / (kh * kw), ky = (kr / kw) % kh, kx = kr % kw;
        const i64 iy = (r0 + j / ow) * sh + ky - pt;
        const i64 ix = (j % ow) * sw + kx - pl;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[((b * xi + ci * xc) * h + iy) * w + ix];
        col[i] = v;
    }
}

// Planes [p] of nb images × c channels, plane (b, ch) at index b·yi + ch·yc (NCHW: yi = c,
// yc = 1); total = nb·c·p.
#define PLANE_ELEM(y, i) (y)[(((i) / (c * p)) * yi + (((i) / p) % c) * yc) * p + (i) % p]

// y[b, ch, :] = bias[ch] on the planes above.
extern "C" __global__ void bias_channels(const float* bias, float* y, i64 total, i64 c, i64 p, i64 yi, i64 yc) {
    GRID_STRIDE(i, total) { PLANE_ELEM(y, i) = bias[(i / p) % c]; }
}

// y ← max(y, 0) on the planes above.
extern "C" __global__ void relu_planes(float* y, i64 total, i64 c, i64 p, i64 yi, i64 yc) {
    GRID_STRIDE(i, total) { PLANE_ELEM(y, i) = fmaxf(PLANE_ELEM(y, i), 0.0f); }
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

// Max (kind 0) or average over in-bounds pixels (kind 1) of a k×k window.
// x: [planes, h, w]; y: [planes, oh, ow]; total = planes·oh·ow.
extern "C" __global__ void pool2d(const float* x, float* y, i64 total, i64 h, i64 w, i64 oh, i64 ow, i64 k, i64 stride, i64 pad, i64 kind) {
    GRID_STRIDE(i, total) {
        const i64 pl = i / (oh * ow), rem = i % (oh * ow);
        const i64 oy = rem / ow, ox = rem % ow;
        const i64 y0 = oy * stride - pad, x0 = ox * stride - pad;
        const i64 ya = y0 < 0 ? 0 : y0, yb = (y0 + k) < h ? (y0 + k) : h;
        const i64 xa = x0 < 0 ? 0 : x0, xb = (x0 + k) < w ? (x0 + k) : w;
        const float* p = x + pl * h * w;
        if (kind == 0) {
            float m = __int_as_float((int)0xff800000); // -inf (NVRTC has no INFINITY macro)
            for (i64 r = ya; r < yb; ++r)
                for (i64 c = xa; c < xb; ++c) {
                    const float v = p[r * w + c];
                    if (v > m || isnan(v)) m = v;
                }
            y[i] = m;
        } else {
            float s = 0.0f;
            for (i64 r = ya; r < yb; ++r)
                for (i64 c = xa; c < xb; ++c) s = __fadd_rn(s, p[r * w + c]);
            y[i] = s / (float)((yb - ya) * (xb - xa));
        }
    }
}

// Source taps of one axis, in f32 as the CPU backend (mode 0: half-pixel, 1: TF1).
__device__ __forceinline__ void resize_tap(i64 o, i64 in, float scale, i64 mode, i64* lo, i64* hi, float* lam) {
    float src = mode == 0 ? __fmul_rn(scale, __fadd_rn((float)o, 0.5f)) - 0.5f : __fmul_rn((float)o, scale);
    if (src < 0.0f) src = 0.0f;
    i64 l = (i64)src;
    if (l > in - 1) l = in - 1;
    *lo = l;
    *hi = l + 1 < in ? l + 1 : in - 1;
    *lam = src - (float)l;
}

// Bilinear resize. x: [planes, h, w]; y: [planes, oh, ow]; total = planes·oh·ow.
extern "C" __global__ void resize_bilinear(const float* x, float* y, i64 total, i64 h, i64 w, i64 oh, i64 ow, float sy, float sx, i64 mode) {
    GRID_STRIDE(i, total) {
        const i64 pl = i / (oh * ow), rem = i % (oh * ow);
        i64 y0, y1, x0, x1;
        float ly, lx;
        resize_tap(rem / ow, h, sy, mode, &y0, &y1, &ly);
        resize_tap(rem % ow, w, sx, mode, &x0, &x1, &lx);
        const float* p = x + pl * h * w;
        const float a = p[y0 * w + x0], b = p[y0 * w + x1], c = p[y1 * w + x0], d = p[y1 * w + x1];
        float v;
        if (mode == 0) {
            const float mx = 1.0f - lx, my = 1.0f - ly;
            const float top = __fadd_rn(__fmul_rn(mx, a), __fmul_rn(lx, b));
            const float bot = __fadd_rn(__fmul_rn(mx, c), __fmul_rn(lx, d));
            v = __fadd_rn(__fmul_rn(my, top), __fmul_rn(ly, bot));
        } else {
            const float top = __fadd_rn(a, __fmul_rn((b - a), lx));
            const float bot = __fadd_rn(c, __fmul_rn((d - c), lx));
            v = __fadd_rn(top, __fmul_rn((bot - top), ly));
        }
        y[i] = v;
    }
}

// x ← max(x, 0).
extern "C" __global__ void relu_inplace(float* x, i64 total) {
    GRID_STRIDE(i, total) { x[i] = fmaxf(x[i], 0.0f); }
}

// dst[b, offset + ch, :] = src[b, ch, :]. src: [n, c_src, hw]; dst: [n, c_dst, hw]; total = n·c_src·hw.
extern "C" __global__ void copy_channels(const float* src, float* dst, i64 total, i64 c_src, i64 c_dst, i64 offset, i64 hw) {
    GRID_STRIDE(i, total) {
        const i64 m = c_src * hw, b = i / m, rem = i % m;
        dst[(b * c_dst + offset) * hw + rem] = src[i];
    }
}
