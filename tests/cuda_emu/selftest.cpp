// Self-test of the host CUDA emulator (cuda_emu.cpp): the properties the CUDA tests rely
// on it for, each shown on a kernel that has them and on one that lacks them. Built and
// run by scripts/cuda_emu.sh before the Rust tests; linked against the emulator library
// directly (no cudarc), through the same driver / NVRTC / cuBLAS entry points.
//
// 1. Barriers: a block reduction with its __syncthreads is right in every thread order;
//    without it, it is wrong in at least one order (the emulator exposes the race).
//    Shared memory reads as NaN until written, in every block.
// 2. Warp shuffles: an xor-butterfly sum gives every lane the warp's total.
// 3. A barrier only part of a block reaches is a launch failure (sticky), not a hang.
// 4. Fresh allocations read as NaN; memset / copies respect allocation bounds.
// 5. cuBLAS: sgemm matches a naive product; an invalid leading dimension is refused; with
//    beta = 0 a NaN in C is not read.
// 6. An out-of-bounds write faults at once and the report names the kernel (in a child
//    process, which must die of SIGSEGV).
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
extern "C" {
CUresult cuInit(unsigned);
CUresult cuMemAlloc_v2(CUdeviceptr*, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemcpyHtoD_v2(CUdeviceptr, const void*, size_t);
CUresult cuMemcpyDtoH_v2(void*, CUdeviceptr, size_t);
CUresult cuMemsetD8_v2(CUdeviceptr, unsigned char, size_t);
CUresult cuModuleLoadData(void**, const void*);
CUresult cuModuleGetFunction(void**, void*, const char*);
CUresult cuLaunchKernel(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**);
int nvrtcCreateProgram(void**, const char*, const char*, int, const char* const*, const char* const*);
int nvrtcCompileProgram(void*, int, const char* const*);
int nvrtcGetPTXSize(void*, size_t*);
int nvrtcGetPTX(void*, char*);
int nvrtcGetProgramLogSize(void*, size_t*);
int nvrtcGetProgramLog(void*, char*);
int cublasCreate_v2(void**);
int cublasSgemm_v2(void*, int, int, int, int, int, const float*, const float*, int, const float*, int, const float*, float*, int);
}

static int failures = 0;
#define CHECK(cond, ...)                            \
    do {                                            \
        if (!(cond)) {                              \
            fprintf(stderr, "selftest FAILED: ");   \
            fprintf(stderr, __VA_ARGS__);           \
            fprintf(stderr, "  [%s]\n", #cond);     \
            failures++;                             \
        }                                           \
    } while (0)

static const char* SOURCE = R"(
typedef long long i64;
// Block sum of 256 values into out[0], through shared memory; `sync` = 0 drops the
// barrier between the partial sums and the final read.
extern "C" __global__ void block_sum(const float* x, float* out, i64 sync) {
    __shared__ float sh[256];
    sh[threadIdx.x] = x[threadIdx.x];
    if (sync) __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int i = 0; i < 256; i++) s += sh[i];
        out[0] = s;
    }
}
// Every lane writes its warp's total.
extern "C" __global__ void warp_total(const float* x, float* out) {
    float v = x[threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[threadIdx.x] = v;
}
// Half of each warp waits at a block barrier, the other half at a warp shuffle that
// needs the whole warp: neither can complete.
extern "C" __global__ void split_barrier(float* out) {
    if (threadIdx.x % 32 < 16) {
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    } else {
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 2.0f, 1);
    }
}
// Reads a shared value no thread wrote (only a GPU's undefined shared memory, or the
// emulator's NaN poison, can come out).
extern "C" __global__ void shared_unwritten(float* out) {
    __shared__ float sh[4];
    if (threadIdx.x == 0) out[0] = sh[3];
}
// Writes one element past n.
extern "C" __global__ void overrun(float* out, i64 n) {
    if (threadIdx.x == 0) out[n] = 1.0f;
}
)";

static void* load_module() {
    void* prog = nullptr;
    CHECK(nvrtcCreateProgram(&prog, SOURCE, "selftest.cu", 0, nullptr, nullptr) == 0, "nvrtcCreateProgram");
    const char* opts[] = {"--gpu-architecture=compute_90"};
    int rc = nvrtcCompileProgram(prog, 1, opts);
    if (rc != 0) {
        size_t n = 0;
        nvrtcGetProgramLogSize(prog, &n);
        std::string log(n, '\0');
        nvrtcGetProgramLog(prog, &log[0]);
        fprintf(stderr, "selftest: compile failed:\n%s\n", log.c_str());
        exit(1);
    }
    size_t n = 0;
    nvrtcGetPTXSize(prog, &n);
    std::string ptx(n, '\0');
    nvrtcGetPTX(prog, &ptx[0]);
    CHECK(ptx.find(".entry block_sum(") != std::string::npos, "the PTX text lists its kernels");
    void* mod = nullptr;
    CHECK(cuModuleLoadData(&mod, ptx.c_str()) == 0, "cuModuleLoadData");
    return mod;
}

static void* func(void* mod, const char* name) {
    void* f = nullptr;
    CHECK(cuModuleGetFunction(&f, mod, name) == 0, "cuModuleGetFunction(%s)", name);
    return f;
}

static CUdeviceptr upload(const std::vector<float>& v) {
    CUdeviceptr p = 0;
    cuMemAlloc_v2(&p, v.size() * 4);
    cuMemcpyHtoD_v2(p, v.data(), v.size() * 4);
    return p;
}

static std::vector<float> download(CUdeviceptr p, size_t n) {
    std::vector<float> v(n);
    cuMemcpyDtoH_v2(v.data(), p, n * 4);
    return v;
}

// Runs block_sum in the current process's order; true if the sum is exact.
static bool block_sum_right(void* mod, long long sync) {
    std::vector<float> x(256);
    for (int i = 0; i < 256; i++) x[i] = (float)(i % 7 + 1);
    float want = 0;
    for (float v : x) want += v;
    CUdeviceptr dx = upload(x), dout = upload({0.0f});
    void* args[] = {&dx, &dout, &sync};
    CHECK(cuLaunchKernel(func(mod, "block_sum"), 1, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr) == 0, "launch block_sum");
    const float got = download(dout, 1)[0];
    cuMemFree_v2(dx);
    cuMemFree_v2(dout);
    return got == want;
}

int main(int argc, char** argv) {
    // Child mode: one order's block_sum verdicts, as the exit status.
    if (argc == 3 && strcmp(argv[1], "--order") == 0) {
        setenv("UCGM_CUDA_EMU_ORDER", argv[2], 1);
        cuInit(0);
        void* mod = load_module();
        return (block_sum_right(mod, 1) ? 0 : 1) | (block_sum_right(mod, 0) ? 0 : 2);
    }
    if (argc == 2 && strcmp(argv[1], "--overrun") == 0) {
        cuInit(0);
        void* mod = load_module();
        CUdeviceptr d = 0;
        cuMemAlloc_v2(&d, 1000 * 4);
        long long n = 1000;
        void* args[] = {&d, &n};
        cuLaunchKernel(func(mod, "overrun"), 1, 1, 1, 32, 1, 1, 0, nullptr, args, nullptr);
        return 0;  // not reached when the emulator catches the write
    }

    // 1. Barriers, in each order (a child process per order: the order is read at cuInit).
    bool racy_wrong_somewhere = false;
    for (const char* order : {"reverse", "forward", "random:1"}) {
        std::string cmd = std::string("'") + argv[0] + "' --order " + order;
        int st = system(cmd.c_str());
        CHECK(WIFEXITED(st), "order %s: child did not exit normally", order);
        int code = WEXITSTATUS(st);
        CHECK((code & 1) == 0, "order %s: block sum WITH its barrier is wrong", order);
        racy_wrong_somewhere |= (code & 2) != 0;
    }
    CHECK(racy_wrong_somewhere, "a block sum WITHOUT its barrier was right in every order: races go unseen");

    cuInit(0);
    void* mod = load_module();

    // 2. Warp shuffles.
    std::vector<float> x(64);
    for (int i = 0; i < 64; i++) x[i] = (float)i;
    CUdeviceptr dx = upload(x), dout = upload(std::vector<float>(64, 0.0f));
    void* wargs[] = {&dx, &dout};
    CHECK(cuLaunchKernel(func(mod, "warp_total"), 1, 1, 1, 64, 1, 1, 0, nullptr, wargs, nullptr) == 0, "launch warp_total");
    std::vector<float> w = download(dout, 64);
    for (int i = 0; i < 64; i++) {
        const float want = i < 32 ? 496.0f : 1520.0f;  // Σ0..31, Σ32..63
        CHECK(w[i] == want, "warp_total lane %d: %g, want %g", i, w[i], want);
    }

    // 1b. Shared memory is poisoned before each block.
    CUdeviceptr d1 = upload({0.0f});
    void* uargs[] = {&d1};
    CHECK(cuLaunchKernel(func(mod, "shared_unwritten"), 1, 1, 1, 32, 1, 1, 0, nullptr, uargs, nullptr) == 0, "launch shared_unwritten");
    CHECK(isnan(download(d1, 1)[0]), "unwritten __shared__ memory reads as NaN");

    // 4. Fresh memory is NaN; out-of-bounds memset / copies are refused.
    CUdeviceptr fresh = 0;
    CHECK(cuMemAlloc_v2(&fresh, 16 * 4) == 0, "alloc");
    std::vector<float> f = download(fresh, 16);
    CHECK(isnan(f[0]) && isnan(f[15]), "fresh device memory reads as NaN");
    CHECK(cuMemsetD8_v2(fresh, 0, 16 * 4 + 1) != 0, "memset past an allocation is refused");
    std::vector<float> big(17, 1.0f);
    CHECK(cuMemcpyHtoD_v2(fresh, big.data(), 17 * 4) != 0, "a copy past an allocation is refused");

    // 5. cuBLAS: C[2×2] = A[2×3]·B[3×2] column-major; a bad lda; beta = 0 ignores NaN in C.
    void* h = nullptr;
    CHECK(cublasCreate_v2(&h) == 0, "cublasCreate");
    std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 2, 1, 0, 3};  // A: lda 2, B: ldb 3
    CUdeviceptr da = upload(a), db = upload(b), dc = upload({NAN, NAN, NAN, NAN});
    const float one = 1.0f, zero = 0.0f;
    CHECK(cublasSgemm_v2(h, 0, 0, 2, 2, 3, &one, (float*)da, 2, (float*)db, 3, &zero, (float*)dc, 2) == 0, "sgemm");
    std::vector<float> c = download(dc, 4);
    // A = [[1,3,5],[2,4,6]], B = [[1,1],[0,0],[2,3]] → C = [[11,16],[14,20]] (column-major 11,14,16,20)
    CHECK(c[0] == 11 && c[1] == 14 && c[2] == 16 && c[3] == 20, "sgemm result %g %g %g %g", c[0], c[1], c[2], c[3]);
    CHECK(cublasSgemm_v2(h, 0, 0, 2, 2, 3, &one, (float*)da, 1, (float*)db, 3, &zero, (float*)dc, 2) == 7, "lda < m is refused");

    // 6. An overrun faults in a child, with the kernel named.
    {
        std::string cmd = std::string("'") + argv[0] + "' --overrun 2>&1";
        FILE* p = popen(cmd.c_str(), "r");
        std::string out;
        char buf[512];
        while (p && fgets(buf, sizeof buf, p)) out += buf;
        int st = p ? pclose(p) : -1;
        // popen runs a shell, which reports a child killed by signal S as exit status 128 + S.
        const bool segv = (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) || (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGSEGV);
        CHECK(segv, "an out-of-bounds write did not fault (status %d)", st);
        CHECK(out.find("kernel overrun: invalid device memory access") != std::string::npos, "the fault report names the kernel: %s",
              out.c_str());
    }

    // 3. A barrier only half the block reaches: a launch failure, then sticky.
    CUdeviceptr d256 = upload(std::vector<float>(256, 0.0f));
    void* sargs[] = {&d256};
    CHECK(cuLaunchKernel(func(mod, "split_barrier"), 1, 1, 1, 256, 1, 1, 0, nullptr, sargs, nullptr) == 719, "a split barrier is a launch failure");
    CUdeviceptr after = 0;
    CHECK(cuMemAlloc_v2(&after, 4) == 719, "the failure is sticky");

    if (failures) {
        fprintf(stderr, "cuda-emu selftest: %d failure(s)\n", failures);
        return 1;
    }
    printf("cuda-emu selftest: ok (barriers in 3 orders, a missing barrier caught, shuffles, deadlock, NaN-fresh memory, bounds, sgemm, overrun fault)\n");
    return 0;
}
