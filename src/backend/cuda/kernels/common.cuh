// Shared helpers for every ucgm kernel. Self-contained: NVRTC compiles this file
// concatenated with the op files, with no #include and no CUDA headers.
//
// Conventions (checked by a unit test against the Rust launch table):
// * every kernel is `extern "C" __global__`;
// * pointer parameters are `float*` / `const float*` / `double*` / `const long long*`,
//   passed from Rust as 64-bit device addresses;
// * sizes and flags are `long long` (Rust i64), scalars `float` (f32) or `double` (f64);
// * indices are 64-bit: attention probability buffers exceed 2^31 elements;
// * no atomics: every output element is written by exactly one thread, and every
//   reduction runs in a fixed order that depends only on the shape and the block size,
//   so results are bit-reproducible from run to run.

typedef long long i64;

#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)
#define BLOCK_ROWS(r, rows) for (i64 r = blockIdx.x; r < (rows); r += gridDim.x)

__device__ __forceinline__ float warp_sum(float v) {
    // xor butterfly: every lane ends with the same, order-fixed sum.
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum, returned to every thread. blockDim.x must be a multiple of 32 (≤ 1024);
// `sh` is a __shared__ array of 32 elements. Safe to call repeatedly with the same `sh`.
__device__ float block_sum(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // previous readers of sh[0] are done
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < nwarps ? sh[lane] : 0.0f;
        w = warp_sum(w);
        if (lane == 0) sh[0] = w;
    }
    __syncthreads();
    return sh[0];
}

__device__ double block_sum_d(double v, double* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double w = lane < nwarps ? sh[lane] : 0.0;
        w = warp_sum_d(w);
        if (lane == 0) sh[0] = w;
    }
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < nwarps ? sh[lane] : __int_as_float(0xff800000);
        w = warp_max(w);
        if (lane == 0) sh[0] = w;
    }
    __syncthreads();
    return sh[0];
}

// σ(z) = 1 / (1 + e^(−z)), IEEE expf (the CPU uses a ≈1-ulp polynomial; both are within
// a few ulp of the exact value).
__device__ __forceinline__ float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

// x is neither NaN nor ±inf (bit test: no header needed).
__device__ __forceinline__ bool finitef_(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

// bf16 bits of v, round to nearest even, NaN kept (what a `__nv_bfloat16` conversion gives;
// the sources include no CUDA header).
__device__ __forceinline__ unsigned short bf16_bits(float v) {
    unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
