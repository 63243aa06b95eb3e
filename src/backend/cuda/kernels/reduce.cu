// Deterministic two-stage reductions: column sums (bias gradients) and Σx² (gradient
// norm). Stage 1 reduces fixed-size chunks, stage 2 adds the chunk partials in chunk
// order; the split depends only on the shape, never on the device or a race.

// part[c, j] = Σ_{r in chunk c} m[r, j], rows in order. m: [rows, cols]; part: [nchunks, cols];
// one thread per (c, j): n = nchunks·cols.
extern "C" __global__ void colsum_partial(const float* m, float* part, i64 n, i64 rows, i64 cols, i64 chunk) {
    GRID_STRIDE(i, n) {
        const i64 c = i / cols, j = i % cols;
        const i64 r0 = c * chunk;
        const i64 r1 = r0 + chunk < rows ? r0 + chunk : rows;
        float s = 0.0f;
        for (i64 r = r0; r < r1; ++r) s += m[r * cols + j];
        part[i] = s;
    }
}

// acc[j] += Σ_c part[c, j], chunks in order. part: [nchunks, cols]; acc: [cols].
extern "C" __global__ void colsum_finish(const float* part, float* acc, i64 nchunks, i64 cols) {
    GRID_STRIDE(j, cols) {
        float s = 0.0f;
        for (i64 c = 0; c < nchunks; ++c) s += part[c * cols + j];
        acc[j] = acc[j] + s;
    }
}

// part[c] = Σ x² over chunk c (in f64), one block per chunk. x: [n]; part: [ceil(n/chunk)].
extern "C" __global__ void sumsq_partial(const float* x, double* part, i64 n, i64 chunk) {
    __shared__ double sh[32];
    const i64 nchunks = (n + chunk - 1) / chunk;
    BLOCK_ROWS(c, nchunks) {
        const i64 e0 = c * chunk;
        const i64 e1 = e0 + chunk < n ? e0 + chunk : n;
        double s = 0.0;
        for (i64 e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
            const double v = (double)x[e];
            s += v * v;
        }
        s = block_sum_d(s, sh);
        if (threadIdx.x == 0) part[c] = s;
    }
}

// out[0] = Σ part (f64), one block: thread k adds part[k], part[k + blockDim], … in order,
// then a fixed-order block reduction.
extern "C" __global__ void sum_finish_d(const double* part, double* out, i64 n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (i64 e = threadIdx.x; e < n; e += blockDim.x) s += part[e];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[0] = s;
}
