// Device-side half of the host CUDA emulator (see cuda_emu.cpp): force-included in front
// of the kernel sources when the fake NVRTC "compiles" them with the host C++ compiler.
//
// It supplies the subset of CUDA C++ the ucgm kernels use, with CUDA's semantics:
// * `threadIdx`, `blockIdx`, `blockDim`, `gridDim`, set by the emulator before it resumes
//   a simulated thread;
// * `__syncthreads()` and `__shfl_xor_sync()` suspend the simulated thread (a fiber) until
//   every thread of its block (or every lane of its warp) has arrived, so code that relies
//   on barriers is executed faithfully, and code that omits one sees stale data, as on a GPU;
// * `__shared__` variables are `static` in a section of their own: blocks run one at a
//   time in the emulator, so one copy per kernel is one copy per block, and the emulator
//   fills the section with 0xFF bytes (NaN) before every block, as a block's shared memory
//   starts out undefined on a GPU (stale values from the previous block would hide a read
//   before a write);
// * the bit casts and math intrinsics the sources call.
//
// Nothing here may be used by device code that real NVRTC would reject: the kernels are
// also compiled by the real NVRTC (a unit test), so CUDA stays the reference dialect.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <type_traits>
#include <utility>

struct uint3 {
    unsigned x, y, z;
};
typedef uint3 dim3;

extern "C" {
// Written by the emulator (found with dlsym) before each simulated thread runs.
uint3 threadIdx, blockIdx, blockDim, gridDim;
// Suspend the running simulated thread at a block barrier / a warp shuffle.
void (*ucgm_emu_syncthreads)(void);
unsigned long long (*ucgm_emu_shfl_xor)(unsigned long long bits, int lane_mask);
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static __attribute__((section("ucgm_shared")))

// Bounds of the __shared__ variables (the linker's __start_/__stop_ symbols of their
// section; absent, hence null, when the kernels declare none).
extern "C" __attribute__((weak)) char __start_ucgm_shared[];
extern "C" __attribute__((weak)) char __stop_ucgm_shared[];
extern "C" void ucgm_emu_shared_bounds(char** begin, char** end) {
    *begin = __start_ucgm_shared;
    *end = __stop_ucgm_shared;
}

inline void __syncthreads() { ucgm_emu_syncthreads(); }

template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    (void)mask;
    (void)width;
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = ucgm_emu_shfl_xor(bits, lane_mask);
    T r;
    memcpy(&r, &bits, sizeof(T));
    return r;
}

inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline int __float_as_int(float f) {
    int u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline float __uint_as_float(unsigned i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline long long __double_as_longlong(double d) {
    long long u;
    memcpy(&u, &d, 8);
    return u;
}
// Round-to-nearest operations the compiler must not fuse into an FMA (the kernels are
// compiled with contraction on, as NVRTC's default --fmad=true does): the empty asm makes
// the rounded value opaque.
inline float __fmul_rn(float a, float b) {
    float r = a * b;
    __asm__("" : "+x"(r));
    return r;
}
inline float __fadd_rn(float a, float b) {
    float r = a + b;
    __asm__("" : "+x"(r));
    return r;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }

// Calls kernel `f` with the arguments of a cuLaunchKernel `kernelParams` array (one
// pointer to each argument's value, in parameter order).
template <class... A, std::size_t... I>
inline void ucgm_emu_call(void (*f)(A...), void** params, std::index_sequence<I...>) {
    f(*reinterpret_cast<std::remove_cv_t<A>*>(params[I])...);
}
template <class... A>
inline void ucgm_emu_invoke(void (*f)(A...), void** params) {
    ucgm_emu_call(f, params, std::index_sequence_for<A...>{});
}

// NVRTC compiles the kernels without the C library's headers: macros that math.h gives
// the host compiler here (INFINITY, NAN, HUGE_VALF, M_PI, FLT_MAX…) do not exist there.
// Removing them makes the emulator reject what NVRTC rejects (the first H200 run failed
// on a -INFINITY that the emulator had accepted).
#undef INFINITY
#undef NAN
#undef HUGE_VAL
#undef HUGE_VALF
#undef M_PI
#undef FLT_MAX
