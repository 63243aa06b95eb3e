// A host emulator of the three CUDA libraries ucgm's CUDA backend loads at run time —
// the driver (libcuda.so), NVRTC (libnvrtc.so) and cuBLAS (libcublas.so) — so that the
// unmodified backend, through unmodified cudarc, runs its kernels on a machine without a
// GPU. Built by scripts/cuda_emu.sh into one shared object with the three library names
// pointing at it; a process started with that folder on LD_LIBRARY_PATH sees one device,
// "ucgm CUDA emulator".
//
// What is emulated, and how faithfully:
// * Device memory is host memory: a CUdeviceptr is the host address. Stream-ordered and
//   plain allocations are filled with 0xFF bytes (NaN as f32/f64), as uninitialised device
//   memory would hold garbage; `alloc_zeros` clears them like on a GPU. Each allocation
//   ends at a page boundary followed by a guard page, so a kernel or GEMM that reads or
//   writes past a buffer's end faults at once, and the report names the kernel. Every operation runs
//   synchronously, in issue order, which is one legal schedule of a single stream.
// * NVRTC compiles the CUDA C++ source with the host C++ compiler (`c++`, or
//   $UCGM_CUDA_EMU_CXX) after emu_kernel.hpp, into a shared object cached by content hash;
//   compile errors come back as the NVRTC log. `-ffp-contract=fast -march=native` lets it
//   fuse a·b + c into FMAs where the host has them, as NVRTC does by default. The "PTX" it returns names that object
//   (and lists `.entry NAME(` for each kernel, as real PTX would).
// * `__shared__` memory is filled with 0xFF bytes (NaN) before every block, as it starts
//   out undefined on a GPU.
// * A kernel launch runs every block of the grid, one block at a time, each thread of a
//   block as a fiber; the order of blocks and of threads is reverse, forward or random
//   ($UCGM_CUDA_EMU_ORDER, see pass_order), so code that assumes an order fails in one.
//   `__syncthreads` suspends a fiber until every live thread of its block arrives;
//   `__shfl_xor_sync` until every lane of its warp arrives, then exchanges values. Within
//   a barrier interval threads run one after another in that order, so a missing barrier
//   shows as a wrong result in at least one order. A barrier some threads can never reach (deadlock) is a
//   launch failure (CUDA_ERROR_LAUNCH_FAILED, sticky, like a device fault).
// * cuBLAS: column-major sgemm, strided-batched sgemm and their GemmEx forms (bf16 or f32
//   inputs, f32 output and compute) with cuBLAS's argument checks
//   (leading dimensions, sizes) and its beta = 0 rule (C is not read). Products accumulate
//   in f64 and round once (at least as accurate as cuBLAS, so a mismatch is a logic error,
//   not rounding); the math mode (TF32) is recorded and ignored.
// * Launch limits are checked: block ≤ 1024 threads, grid y/z ≤ 65535, no zero sizes.
//
// Not emulated: concurrency between streams, timing, memory limits (the device reports
// 16 GiB), accesses before a buffer's start that stay inside its first page, CUDA graphs.
//
// Every entry point is `extern "C"` with the driver's ABI (integers and pointers); the
// handful of CUDA enum values used are spelled out below.

#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#ifndef UCGM_EMU_KERNEL_HEADER
#error "build with -DUCGM_EMU_KERNEL_HEADER=\"/path/to/emu_kernel.hpp\""
#endif

#if !defined(__x86_64__)
#error "the fiber switch is written for x86-64"
#endif

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUmemoryPool;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_UNKNOWN = 999,
};

// ------------------------------------------------------------------ error state

static std::atomic<int> g_sticky{CUDA_SUCCESS};
static std::atomic<bool> g_initialised{false};

static void emu_log(const char* fmt, const char* a = "", const char* b = "") {
    fprintf(stderr, "[cuda-emu] ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
}

// The sticky error, or CUDA_SUCCESS.
static CUresult sticky() { return g_sticky.load(); }

#define GUARD()                                                   \
    do {                                                          \
        if (!g_initialised.load()) return CUDA_ERROR_NOT_INITIALIZED; \
        if (CUresult s_ = sticky()) return s_;                    \
    } while (0)

// ------------------------------------------------------------------ fibers

// Saves callee-saved registers on the current stack, stores the stack pointer in *from,
// switches to stack `to` and restores its registers. A fresh stack is prepared by
// fiber_stack() so that its first switch "returns" into fiber_main.
extern "C" void ucgm_emu_switch(void** from, void* to);
asm(R"(
.text
.globl ucgm_emu_switch
.type ucgm_emu_switch,@function
ucgm_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size ucgm_emu_switch, .-ucgm_emu_switch
)");

enum FiberState { READY, AT_SYNC, AT_SHFL, DONE };

struct Fiber {
    void* sp = nullptr;
    FiberState state = DONE;
    unsigned long long shfl_in = 0, shfl_out = 0;
    int shfl_mask = 0;
};

struct Dim {
    unsigned x, y, z;
};

typedef void (*Trampoline)(void** params);

struct Module;

struct Function {
    Module* module;
    Trampoline entry;
    std::string name;
};

// A loaded kernel module: the compiled shared object, its built-in variables, and the
// functions handed out (owned here, freed with the module).
struct Module {
    void* handle;
    Dim *thread_idx, *block_idx, *block_dim, *grid_dim;
    std::map<std::string, Function*> functions;
    // The __shared__ variables (poisoned before every block); empty if none.
    char *shared_begin = nullptr, *shared_end = nullptr;
    ~Module() {
        for (auto& f : functions) delete f.second;
    }
};

static const size_t STACK_BYTES = 64 * 1024;

// The launch in progress (one at a time: g_launch_mutex).
static std::mutex g_launch_mutex;
static std::vector<Fiber> g_fibers;
static char* g_stacks = nullptr;
static size_t g_stack_count = 0;
static void* g_sched_sp = nullptr;
static int g_current = 0;
static const Function* g_func = nullptr;
static void** g_params = nullptr;

static void fiber_main() {
    g_func->entry(g_params);
    const int me = g_current;
    g_fibers[me].state = DONE;
    ucgm_emu_switch(&g_fibers[me].sp, g_sched_sp);
    abort();  // a finished fiber is never resumed
}

// A fresh stack for fiber t whose first switch enters fiber_main with the ABI's alignment.
static void* fiber_stack(size_t t) {
    uintptr_t top = (uintptr_t)(g_stacks + (t + 1) * STACK_BYTES) & ~(uintptr_t)15;
    void** sp = (void**)top;
    *--sp = nullptr;                  // fiber_main's (never used) return address
    *--sp = (void*)&fiber_main;       // popped by `ret`
    for (int r = 0; r < 6; r++) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
    return sp;
}

extern "C" void emu_syncthreads(void) {
    const int me = g_current;
    g_fibers[me].state = AT_SYNC;
    ucgm_emu_switch(&g_fibers[me].sp, g_sched_sp);
}

extern "C" unsigned long long emu_shfl_xor(unsigned long long bits, int lane_mask) {
    const int me = g_current;
    g_fibers[me].shfl_in = bits;
    g_fibers[me].shfl_mask = lane_mask;
    g_fibers[me].state = AT_SHFL;
    ucgm_emu_switch(&g_fibers[me].sp, g_sched_sp);
    return g_fibers[me].shfl_out;
}

// Order in which blocks, and the threads of a block within a barrier interval, run
// ($UCGM_CUDA_EMU_ORDER): reverse (default), forward, or random[:SEED] (a fresh
// permutation every pass). Forward order exposes a missing barrier before a lower-index
// thread reads what higher ones wrote (the reduction pattern); reverse order the converse
// (a broadcast from thread 0); random orders catch other interleavings.
enum Order { ORDER_REVERSE, ORDER_FORWARD, ORDER_RANDOM };
static Order g_order = ORDER_REVERSE;
static unsigned long long g_rng = 0x9E3779B97F4A7C15ull;

static unsigned long long next_random() {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

// Fills `perm` with the run order of n items for this pass.
static void pass_order(std::vector<int>& perm, int n) {
    perm.resize(n);
    for (int i = 0; i < n; i++) perm[i] = g_order == ORDER_REVERSE ? n - 1 - i : i;
    if (g_order == ORDER_RANDOM)
        for (int i = n - 1; i > 0; i--) std::swap(perm[i], perm[next_random() % (unsigned long long)(i + 1)]);
}

static void read_order() {
    const char* o = getenv("UCGM_CUDA_EMU_ORDER");
    if (!o || !*o || strcmp(o, "reverse") == 0) {
        g_order = ORDER_REVERSE;
    } else if (strcmp(o, "forward") == 0) {
        g_order = ORDER_FORWARD;
    } else if (strncmp(o, "random", 6) == 0) {
        g_order = ORDER_RANDOM;
        if (o[6] == ':') g_rng = strtoull(o + 7, nullptr, 10) * 2654435761ull + 1;
    } else {
        fprintf(stderr, "[cuda-emu] UCGM_CUDA_EMU_ORDER=%s not understood (reverse, forward, random[:SEED]); using reverse\n", o);
    }
}

// Runs one block of `n` threads to completion. False (with `err`) on a deadlock.
static bool run_block(const Module* m, int n, Dim bd, std::string& err) {
    if (m->shared_begin && m->shared_end > m->shared_begin) memset(m->shared_begin, 0xFF, (size_t)(m->shared_end - m->shared_begin));
    for (int t = 0; t < n; t++) {
        g_fibers[t].sp = fiber_stack(t);
        g_fibers[t].state = READY;
    }
    static std::vector<int> perm;
    for (;;) {
        pass_order(perm, n);
        for (int step = 0; step < n; step++) {
            const int t = perm[step];
            if (g_fibers[t].state != READY) continue;
            g_current = t;
            *m->thread_idx = Dim{t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
            ucgm_emu_switch(&g_sched_sp, g_fibers[t].sp);
        }
        bool released = false;
        for (int w = 0; w * 32 < n; w++) {
            const int base = w * 32, lanes = std::min(32, n - base);
            int waiting = 0;
            for (int l = 0; l < lanes; l++) waiting += g_fibers[base + l].state == AT_SHFL;
            if (waiting != lanes) continue;
            for (int l = 0; l < lanes; l++) {
                const int src = l ^ g_fibers[base + l].shfl_mask;
                g_fibers[base + l].shfl_out = g_fibers[base + (src < lanes ? src : l)].shfl_in;
            }
            for (int l = 0; l < lanes; l++) g_fibers[base + l].state = READY;
            released = true;
        }
        if (released) continue;
        int live = 0, at_sync = 0, at_shfl = 0;
        for (int t = 0; t < n; t++) {
            live += g_fibers[t].state != DONE;
            at_sync += g_fibers[t].state == AT_SYNC;
            at_shfl += g_fibers[t].state == AT_SHFL;
        }
        if (live == 0) return true;
        if (at_sync == live) {
            for (int t = 0; t < n; t++)
                if (g_fibers[t].state == AT_SYNC) g_fibers[t].state = READY;
            continue;
        }
        char buf[256];
        snprintf(buf, sizeof buf, "deadlock: %d live threads, %d at __syncthreads, %d at a warp shuffle whose warp can never complete", live,
                 at_sync, at_shfl);
        err = buf;
        return false;
    }
}

// ------------------------------------------------------------------ memory

// Every allocation gets pages of its own, its last byte at the end of its last page and
// an inaccessible guard page after it (and one before): a kernel or a GEMM reading or
// writing past the end of a buffer faults at once instead of corrupting a neighbour, and
// the SIGSEGV handler below names the kernel and the allocation.
struct Alloc {
    char* map;         // the whole mapping, guards included
    size_t map_bytes;  // its length
    size_t bytes;      // what was asked for
};

static std::mutex g_mem_mutex;
static std::map<uintptr_t, Alloc> g_allocs;  // by user address
static size_t g_allocated = 0;
static const size_t DEVICE_BYTES = 16ull << 30;

static CUresult mem_alloc(CUdeviceptr* dptr, size_t bytes) {
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    if (g_allocated + bytes > DEVICE_BYTES) return CUDA_ERROR_OUT_OF_MEMORY;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t rounded = (bytes + 7) & ~(size_t)7;  // 8-byte aligned start
    const size_t data_pages = (rounded + page - 1) / page;
    const size_t map_bytes = (data_pages + 2) * page;
    char* m = (char*)mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    if (mprotect(m, page, PROT_NONE) != 0 || mprotect(m + (data_pages + 1) * page, page, PROT_NONE) != 0) {
        munmap(m, map_bytes);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    char* user = m + (data_pages + 1) * page - rounded;
    memset(user, 0xFF, rounded);  // uninitialised device memory: NaN as f32 / f64
    g_allocs[(uintptr_t)user] = Alloc{m, map_bytes, bytes};
    g_allocated += bytes;
    *dptr = (CUdeviceptr)(uintptr_t)user;
    return CUDA_SUCCESS;
}

static CUresult mem_free(CUdeviceptr dptr) {
    if (dptr == 0) return CUDA_SUCCESS;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_allocs.find((uintptr_t)dptr);
    if (it == g_allocs.end()) return CUDA_ERROR_INVALID_VALUE;
    g_allocated -= it->second.bytes;
    munmap(it->second.map, it->second.map_bytes);
    g_allocs.erase(it);
    return CUDA_SUCCESS;
}

// Whether [p, p + bytes) lies inside one allocation.
static bool mem_valid(CUdeviceptr p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_allocs.upper_bound((uintptr_t)p);
    if (it == g_allocs.begin()) return false;
    --it;
    return (uintptr_t)p >= it->first && (uintptr_t)p + bytes <= it->first + it->second.bytes;
}

// What the emulator is running on this thread (a kernel name or a cuBLAS call), for the
// fault report. Initial-exec TLS: readable from a signal handler.
static __thread const char* t_activity __attribute__((tls_model("initial-exec"))) = nullptr;
static struct sigaction g_previous_segv;

// Reports an emulated device's invalid access, then hands the fault to the previous
// handler (the Rust runtime's, which ends the process) by restoring it and returning, so
// the faulting instruction runs again under it.
static void on_segv(int sig, siginfo_t* info, void* ctx) {
    (void)ctx;
    const char* what = t_activity;
    if (what) {
        char msg[512];
        const uintptr_t addr = (uintptr_t)info->si_addr;
        int n = snprintf(msg, sizeof msg, "[cuda-emu] %s: invalid device memory access at 0x%lx", what, (unsigned long)addr);
        if (g_mem_mutex.try_lock()) {
            auto it = g_allocs.upper_bound(addr);
            if (it != g_allocs.begin()) {
                --it;
                if (addr >= it->first)
                    n += snprintf(msg + n, sizeof msg - n, " (%lu bytes past the start of a %lu-byte allocation)", (unsigned long)(addr - it->first),
                                  (unsigned long)it->second.bytes);
            }
            g_mem_mutex.unlock();
        }
        snprintf(msg + n, sizeof msg - n, "\n");
        ssize_t w = write(2, msg, strlen(msg));
        (void)w;
    }
    sigaction(sig, &g_previous_segv, nullptr);
}

static void install_fault_report() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &g_previous_segv);
    });
}

// Marks what this thread runs for the duration of a scope.
struct Activity {
    const char* saved;
    explicit Activity(const char* what) : saved(t_activity) { t_activity = what; }
    ~Activity() { t_activity = saved; }
};

// ------------------------------------------------------------------ driver API

static thread_local CUcontext t_current_ctx = nullptr;
static char g_primary_ctx;  // its address is the primary context handle
static char g_pool;         // its address is the default memory pool handle

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT CUresult cuInit(unsigned flags) {
    (void)flags;
    install_fault_report();
    g_initialised = true;
    read_order();
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult e, const char** s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    switch (e) {
        case CUDA_SUCCESS: *s = "no error"; break;
        case CUDA_ERROR_INVALID_VALUE: *s = "invalid argument"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: *s = "out of memory"; break;
        case CUDA_ERROR_NOT_INITIALIZED: *s = "initialization error"; break;
        case CUDA_ERROR_INVALID_DEVICE: *s = "invalid device ordinal"; break;
        case CUDA_ERROR_INVALID_IMAGE: *s = "device kernel image is invalid"; break;
        case CUDA_ERROR_INVALID_CONTEXT: *s = "invalid device context"; break;
        case CUDA_ERROR_INVALID_HANDLE: *s = "invalid resource handle"; break;
        case CUDA_ERROR_NOT_FOUND: *s = "named symbol not found"; break;
        case CUDA_ERROR_LAUNCH_FAILED: *s = "unspecified launch failure (emulator: see stderr)"; break;
        case CUDA_ERROR_NOT_SUPPORTED: *s = "operation not supported (by the emulator)"; break;
        default: *s = "unknown error"; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult e, const char** s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    switch (e) {
        case CUDA_SUCCESS: *s = "CUDA_SUCCESS"; break;
        case CUDA_ERROR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case CUDA_ERROR_NOT_INITIALIZED: *s = "CUDA_ERROR_NOT_INITIALIZED"; break;
        case CUDA_ERROR_INVALID_DEVICE: *s = "CUDA_ERROR_INVALID_DEVICE"; break;
        case CUDA_ERROR_INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; break;
        case CUDA_ERROR_INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; break;
        case CUDA_ERROR_INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
        case CUDA_ERROR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
        case CUDA_ERROR_LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
        case CUDA_ERROR_NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; break;
        default: *s = "CUDA_ERROR_UNKNOWN"; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int* n) {
    if (!g_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (!g_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "ucgm CUDA emulator");
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice d) {
    if (!uuid) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    memset(uuid, 0x5a, 16);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }

EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = DEVICE_BYTES;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int* v, int attrib, CUdevice d) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    switch (attrib) {
        case 1: *v = 1024; break;           // MAX_THREADS_PER_BLOCK
        case 2: case 3: *v = 1024; break;   // MAX_BLOCK_DIM_X / Y
        case 4: *v = 64; break;             // MAX_BLOCK_DIM_Z
        case 5: *v = 2147483647; break;     // MAX_GRID_DIM_X
        case 6: case 7: *v = 65535; break;  // MAX_GRID_DIM_Y / Z
        case 8: *v = 49152; break;          // MAX_SHARED_MEMORY_PER_BLOCK
        case 10: *v = 32; break;            // WARP_SIZE
        case 16: *v = 132; break;           // MULTIPROCESSOR_COUNT
        case 75: *v = 9; break;             // COMPUTE_CAPABILITY_MAJOR
        case 76: *v = 0; break;             // COMPUTE_CAPABILITY_MINOR
        case 115: *v = 1; break;            // MEMORY_POOLS_SUPPORTED
        default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice d) {
    if (!g_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *ctx = &g_primary_ctx;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { return d == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }

EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    if (c && c != &g_primary_ctx) return CUDA_ERROR_INVALID_CONTEXT;
    t_current_ctx = c;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetCurrent(CUcontext* c) {
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    *c = t_current_ctx;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetDevice(CUdevice* d) {
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    if (!t_current_ctx) return CUDA_ERROR_INVALID_CONTEXT;
    *d = 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSynchronize(void) {
    GUARD();
    return CUDA_SUCCESS;
}

// Streams execute every operation at issue, so they are tokens.
EXPORT CUresult cuStreamCreate(CUstream* s, unsigned flags) {
    (void)flags;
    GUARD();
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = malloc(1);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamCreateWithPriority(CUstream* s, unsigned flags, int prio) {
    (void)prio;
    return cuStreamCreate(s, flags);
}
EXPORT CUresult cuStreamDestroy_v2(CUstream s) {
    free(s);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamSynchronize(CUstream s) {
    (void)s;
    GUARD();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned flags) {
    (void)s, (void)e, (void)flags;
    GUARD();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamIsCapturing(CUstream s, int* status) {
    (void)s;
    if (!status) return CUDA_ERROR_INVALID_VALUE;
    *status = 0;  // CU_STREAM_CAPTURE_STATUS_NONE
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamBeginCapture_v2(CUstream s, int mode) {
    (void)s, (void)mode;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuLaunchHostFunc(CUstream s, void (*fn)(void*), void* data) {
    (void)s;
    GUARD();
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    fn(data);
    return CUDA_SUCCESS;
}

struct Event {
    double ms;
};
static double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
EXPORT CUresult cuEventCreate(CUevent* e, unsigned flags) {
    (void)flags;
    GUARD();
    if (!e) return CUDA_ERROR_INVALID_VALUE;
    *e = new Event{now_ms()};
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventDestroy_v2(CUevent e) {
    delete (Event*)e;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventRecord(CUevent e, CUstream s) {
    (void)s;
    GUARD();
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    ((Event*)e)->ms = now_ms();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventSynchronize(CUevent e) {
    GUARD();
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}
EXPORT CUresult cuEventQuery(CUevent e) {
    GUARD();
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}
EXPORT CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
    GUARD();
    if (!ms || !a || !b) return CUDA_ERROR_INVALID_VALUE;
    *ms = (float)(((Event*)b)->ms - ((Event*)a)->ms);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime(ms, a, b); }

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    GUARD();
    return mem_alloc(p, bytes);
}
EXPORT CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream s) {
    (void)s;
    GUARD();
    return mem_alloc(p, bytes);
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { return mem_free(p); }
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    (void)s;
    return mem_free(p);
}
EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    GUARD();
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    *total = DEVICE_BYTES;
    *free_bytes = DEVICE_BYTES - g_allocated;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice d) {
    if (!pool) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *pool = &g_pool;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, int attr, void* value) {
    (void)attr;
    return pool == &g_pool && value ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, int attr, void* value) {
    (void)attr;
    if (pool != &g_pool || !value) return CUDA_ERROR_INVALID_VALUE;
    memset(value, 0, 8);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) {
    GUARD();
    if (n == 0) return CUDA_SUCCESS;
    if (!mem_valid(p, n)) return CUDA_ERROR_INVALID_VALUE;
    memset((void*)(uintptr_t)p, v, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, CUstream s) {
    (void)s;
    return cuMemsetD8_v2(p, v, n);
}
EXPORT CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, CUstream s) {
    (void)s;
    GUARD();
    if (n == 0) return CUDA_SUCCESS;
    if (!mem_valid(p, n * 4)) return CUDA_ERROR_INVALID_VALUE;
    unsigned* d = (unsigned*)(uintptr_t)p;
    for (size_t i = 0; i < n; i++) d[i] = v;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    GUARD();
    if (n == 0) return CUDA_SUCCESS;
    if (!src || !mem_valid(dst, n)) return CUDA_ERROR_INVALID_VALUE;
    memcpy((void*)(uintptr_t)dst, src, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
    (void)s;
    return cuMemcpyHtoD_v2(dst, src, n);
}
EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    GUARD();
    if (n == 0) return CUDA_SUCCESS;
    if (!dst || !mem_valid(src, n)) return CUDA_ERROR_INVALID_VALUE;
    memcpy(dst, (const void*)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) {
    (void)s;
    return cuMemcpyDtoH_v2(dst, src, n);
}
EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    GUARD();
    if (n == 0) return CUDA_SUCCESS;
    if (!mem_valid(src, n) || !mem_valid(dst, n)) return CUDA_ERROR_INVALID_VALUE;
    memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    (void)s;
    return cuMemcpyDtoD_v2(dst, src, n);
}

// ------------------------------------------------------------------ modules and launches

static const char MODULE_MAGIC[] = "// ucgm-cuda-emu module: ";

EXPORT CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    GUARD();
    if (!out || !image) return CUDA_ERROR_INVALID_VALUE;
    const char* text = (const char*)image;
    if (strncmp(text, MODULE_MAGIC, strlen(MODULE_MAGIC)) != 0) {
        emu_log("cuModuleLoadData: not an image made by the emulator's NVRTC");
        return CUDA_ERROR_INVALID_IMAGE;
    }
    const char* path = text + strlen(MODULE_MAGIC);
    std::string so(path, strcspn(path, "\n"));
    void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        emu_log("cuModuleLoadData: %s", dlerror());
        return CUDA_ERROR_INVALID_IMAGE;
    }
    Module* m = new Module{h, (Dim*)dlsym(h, "threadIdx"), (Dim*)dlsym(h, "blockIdx"), (Dim*)dlsym(h, "blockDim"), (Dim*)dlsym(h, "gridDim"), {}};
    auto sync = (void (**)(void))dlsym(h, "ucgm_emu_syncthreads");
    auto shfl = (unsigned long long (**)(unsigned long long, int))dlsym(h, "ucgm_emu_shfl_xor");
    if (!m->thread_idx || !m->block_idx || !m->block_dim || !m->grid_dim || !sync || !shfl) {
        emu_log("cuModuleLoadData: %s lacks the emulator's built-in variables", so.c_str());
        delete m;
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *sync = emu_syncthreads;
    *shfl = emu_shfl_xor;
    if (auto bounds = (void (*)(char**, char**))dlsym(h, "ucgm_emu_shared_bounds")) bounds(&m->shared_begin, &m->shared_end);
    *out = m;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleUnload(CUmodule m) {
    // The shared object stays mapped (a later load of the same image reuses it).
    delete (Module*)m;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleGetFunction(CUfunction* f, CUmodule mod, const char* name) {
    GUARD();
    if (!f || !mod || !name) return CUDA_ERROR_INVALID_VALUE;
    Module* m = (Module*)mod;
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    Function*& slot = m->functions[name];
    if (!slot) {
        std::string sym = std::string("ucgm_emu_k_") + name;
        void* p = dlsym(m->handle, sym.c_str());
        if (!p) {
            m->functions.erase(name);
            return CUDA_ERROR_NOT_FOUND;
        }
        slot = new Function{m, (Trampoline)p, name};
    }
    *f = slot;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuFuncGetAttribute(int* v, int attrib, CUfunction f) {
    if (!v || !f) return CUDA_ERROR_INVALID_VALUE;
    *v = attrib == 0 ? 1024 : 0;  // MAX_THREADS_PER_BLOCK
    return CUDA_SUCCESS;
}
EXPORT CUresult cuFuncSetAttribute(CUfunction f, int attrib, int v) {
    (void)attrib, (void)v;
    return f ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
EXPORT CUresult cuFuncSetCacheConfig(CUfunction f, int c) {
    (void)c;
    return f ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static void launch_failed(const std::string& kernel, const std::string& why) {
    fprintf(stderr, "[cuda-emu] kernel %s failed: %s (the context is now in a sticky error state)\n", kernel.c_str(), why.c_str());
    int expected = CUDA_SUCCESS;
    g_sticky.compare_exchange_strong(expected, CUDA_ERROR_LAUNCH_FAILED);
}

EXPORT CUresult cuLaunchKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                               CUstream s, void** params, void** extra) {
    (void)s;
    GUARD();
    if (!fn) return CUDA_ERROR_INVALID_HANDLE;
    if (extra) return CUDA_ERROR_NOT_SUPPORTED;
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    if (gx == 0 || gy == 0 || gz == 0 || threads == 0 || threads > 1024 || bz > 64 || gy > 65535 || gz > 65535 || gx > 2147483647u ||
        shmem > 49152)
        return CUDA_ERROR_INVALID_VALUE;
    const Function* f = (const Function*)fn;
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    const int n = (int)threads;
    if (g_stack_count < (size_t)n) {
        free(g_stacks);
        g_stacks = (char*)aligned_alloc(4096, (size_t)n * STACK_BYTES);
        if (!g_stacks) {
            g_stack_count = 0;
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        g_stack_count = n;
        g_fibers.assign(n, Fiber{});
    }
    Module* m = f->module;
    *m->block_dim = Dim{bx, by, bz};
    *m->grid_dim = Dim{gx, gy, gz};
    g_func = f;
    g_params = params;
    std::string label = "kernel " + f->name;
    Activity activity(label.c_str());
    const unsigned long long blocks = (unsigned long long)gx * gy * gz;
    std::vector<unsigned long long> block_perm;
    if (g_order == ORDER_RANDOM) {
        block_perm.resize(blocks);
        for (unsigned long long i = 0; i < blocks; i++) block_perm[i] = i;
        for (unsigned long long i = blocks - 1; i > 0; i--) std::swap(block_perm[i], block_perm[next_random() % (i + 1)]);
    }
    for (unsigned long long step = 0; step < blocks; step++) {
        const unsigned long long b = g_order == ORDER_RANDOM ? block_perm[step] : g_order == ORDER_FORWARD ? step : blocks - 1 - step;
        *m->block_idx = Dim{(unsigned)(b % gx), (unsigned)((b / gx) % gy), (unsigned)(b / ((unsigned long long)gx * gy))};
        std::string err;
        if (!run_block(m, n, Dim{bx, by, bz}, err)) {
            launch_failed(f->name, err);
            return CUDA_ERROR_LAUNCH_FAILED;
        }
    }
    return CUDA_SUCCESS;
}

// ------------------------------------------------------------------ NVRTC

typedef int nvrtcResult;
enum : int { NVRTC_SUCCESS = 0, NVRTC_ERROR_INVALID_INPUT = 3, NVRTC_ERROR_INVALID_PROGRAM = 4, NVRTC_ERROR_COMPILATION = 6 };

struct Program {
    std::string source, name, log, ptx;
};

EXPORT const char* nvrtcGetErrorString(nvrtcResult r) {
    switch (r) {
        case NVRTC_SUCCESS: return "NVRTC_SUCCESS";
        case NVRTC_ERROR_INVALID_INPUT: return "NVRTC_ERROR_INVALID_INPUT";
        case NVRTC_ERROR_INVALID_PROGRAM: return "NVRTC_ERROR_INVALID_PROGRAM";
        case NVRTC_ERROR_COMPILATION: return "NVRTC_ERROR_COMPILATION";
        default: return "NVRTC_ERROR (emulator)";
    }
}

EXPORT nvrtcResult nvrtcVersion(int* major, int* minor) {
    if (!major || !minor) return NVRTC_ERROR_INVALID_INPUT;
    *major = 13;
    *minor = 0;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcCreateProgram(Program** prog, const char* src, const char* name, int nheaders, const char* const* headers,
                                      const char* const* include_names) {
    (void)headers, (void)include_names;
    if (!prog || !src) return NVRTC_ERROR_INVALID_INPUT;
    if (nheaders != 0) return NVRTC_ERROR_INVALID_INPUT;  // the ucgm sources are self-contained
    *prog = new Program{src, name ? name : "default_program", "", ""};
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcDestroyProgram(Program** prog) {
    if (!prog || !*prog) return NVRTC_ERROR_INVALID_PROGRAM;
    delete *prog;
    *prog = nullptr;
    return NVRTC_SUCCESS;
}

// Names of the `__global__ void NAME(` kernels of a source.
static std::vector<std::string> kernel_names(const std::string& src) {
    std::vector<std::string> out;
    size_t pos = 0;
    while ((pos = src.find("__global__", pos)) != std::string::npos) {
        pos += strlen("__global__");
        size_t p = src.find_first_not_of(" \t\n", pos);
        if (p == std::string::npos || src.compare(p, 4, "void") != 0) continue;
        p = src.find_first_not_of(" \t\n", p + 4);
        size_t e = p;
        while (e < src.size() && (isalnum((unsigned char)src[e]) || src[e] == '_')) e++;
        if (e > p && src.find_first_not_of(" \t\n", e) != std::string::npos && src[src.find_first_not_of(" \t\n", e)] == '(')
            out.push_back(src.substr(p, e - p));
    }
    return out;
}

static unsigned long long fnv1a(const std::string& s) {
    unsigned long long h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

static std::string read_file(const std::string& path) {
    std::string out;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    fclose(f);
    return out;
}

EXPORT nvrtcResult nvrtcCompileProgram(Program* prog, int nopts, const char* const* opts) {
    if (!prog) return NVRTC_ERROR_INVALID_PROGRAM;
    for (int i = 0; i < nopts; i++)
        if (!opts || !opts[i]) return NVRTC_ERROR_INVALID_INPUT;  // architecture etc. are accepted and ignored
    const std::vector<std::string> names = kernel_names(prog->source);
    std::string unit = std::string("#include \"") + UCGM_EMU_KERNEL_HEADER + "\"\n#line 1 \"" + prog->name + "\"\n" + prog->source + "\n";
    for (const std::string& k : names) unit += "extern \"C\" void ucgm_emu_k_" + k + "(void** p) { ucgm_emu_invoke(&" + k + ", p); }\n";
    const char* cxx = getenv("UCGM_CUDA_EMU_CXX");
    std::string compiler = cxx && *cxx ? cxx : "c++";
    const std::string flags = "-std=c++17 -O2 -march=native -ffp-contract=fast -fPIC -shared -fno-strict-aliasing";
    std::string dir;
    if (const char* c = getenv("UCGM_CUDA_EMU_CACHE"); c && *c) {
        dir = c;
    } else {
        const char* tmp = getenv("TMPDIR");
        dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/ucgm-cuda-emu-" + std::to_string(getuid());
    }
    mkdir(dir.c_str(), 0700);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", fnv1a(compiler + "\n" + flags + "\n" + read_file(UCGM_EMU_KERNEL_HEADER) + unit));
    const std::string base = dir + "/" + hash, so = base + ".so";
    if (access(so.c_str(), R_OK) != 0) {
        const std::string tag = "." + std::to_string(getpid()) + "." + std::to_string((unsigned long long)(uintptr_t)prog);
        const std::string cpp = base + tag + ".cpp", tmp_so = base + tag + ".so", log = base + tag + ".log";
        FILE* f = fopen(cpp.c_str(), "wb");
        if (!f || fwrite(unit.data(), 1, unit.size(), f) != unit.size()) {
            if (f) fclose(f);
            prog->log = "emulator: cannot write " + cpp;
            return NVRTC_ERROR_COMPILATION;
        }
        fclose(f);
        const std::string cmd = compiler + " " + flags + " -o '" + tmp_so + "' '" + cpp + "' >'" + log + "' 2>&1";
        const int rc = system(cmd.c_str());
        prog->log = read_file(log);
        unlink(cpp.c_str());
        unlink(log.c_str());
        if (rc != 0) {
            unlink(tmp_so.c_str());
            prog->log = "emulator: `" + cmd + "` failed:\n" + prog->log;
            return NVRTC_ERROR_COMPILATION;
        }
        rename(tmp_so.c_str(), so.c_str());  // atomic: concurrent compilers agree on the content
    }
    prog->ptx = std::string(MODULE_MAGIC) + so + "\n";
    for (const std::string& k : names) prog->ptx += "// .entry " + k + "(\n";
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetPTXSize(Program* prog, size_t* n) {
    if (!prog || !n) return NVRTC_ERROR_INVALID_INPUT;
    *n = prog->ptx.size() + 1;
    return NVRTC_SUCCESS;
}
EXPORT nvrtcResult nvrtcGetPTX(Program* prog, char* out) {
    if (!prog || !out) return NVRTC_ERROR_INVALID_INPUT;
    memcpy(out, prog->ptx.c_str(), prog->ptx.size() + 1);
    return NVRTC_SUCCESS;
}
EXPORT nvrtcResult nvrtcGetProgramLogSize(Program* prog, size_t* n) {
    if (!prog || !n) return NVRTC_ERROR_INVALID_INPUT;
    *n = prog->log.size() + 1;
    return NVRTC_SUCCESS;
}
EXPORT nvrtcResult nvrtcGetProgramLog(Program* prog, char* out) {
    if (!prog || !out) return NVRTC_ERROR_INVALID_INPUT;
    memcpy(out, prog->log.c_str(), prog->log.size() + 1);
    return NVRTC_SUCCESS;
}

// ------------------------------------------------------------------ cuBLAS

typedef int cublasStatus_t;
enum : int { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
enum : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

struct BlasHandle {
    CUstream stream;
    int math_mode;
};

EXPORT cublasStatus_t cublasCreate_v2(BlasHandle** h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    if (!g_initialised) return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = new BlasHandle{nullptr, 0};
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasDestroy_v2(BlasHandle* h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasSetStream_v2(BlasHandle* h, CUstream s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasGetStream_v2(BlasHandle* h, CUstream* s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!s) return CUBLAS_STATUS_INVALID_VALUE;
    *s = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasSetMathMode(BlasHandle* h, int mode) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasGetMathMode(BlasHandle* h, int* mode) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = h->math_mode;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasSetWorkspace_v2(BlasHandle* h, void* ws, size_t bytes) {
    (void)ws, (void)bytes;
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

// Operand element loaders: f32, and bf16 given as its 16 bits.
static inline float load(const float* p, size_t i) { return p[i]; }
static inline float load(const uint16_t* p, size_t i) {
    const uint32_t u = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Column-major C[m×n] = alpha·op(A)[m×k]·op(B)[k×n] + beta·C, with cuBLAS's argument checks.
template <class TA, class TB>
static cublasStatus_t gemm_checked(int ta, int tb, int m, int n, int k, float alpha, const TA* a, int lda, const TB* b, int ldb, float beta,
                                   float* c, int ldc) {
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T)) return CUBLAS_STATUS_INVALID_VALUE;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldb < std::max(1, tb == CUBLAS_OP_N ? k : n)) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            double acc = 0.0;
            for (int l = 0; l < k; l++) {
                const float av = ta == CUBLAS_OP_N ? load(a, i + (size_t)l * lda) : load(a, l + (size_t)i * lda);
                const float bv = tb == CUBLAS_OP_N ? load(b, l + (size_t)j * ldb) : load(b, j + (size_t)l * ldb);
                acc += (double)av * bv;
            }
            float& out = c[i + (size_t)j * ldc];
            const float prod = (float)acc;
            out = beta == 0.0f ? alpha * prod : alpha * prod + beta * out;  // beta = 0: C is not read
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasSgemm_v2(BlasHandle* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                                     const float* b, int ldb, const float* beta, float* c, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (sticky()) return CUBLAS_STATUS_NOT_SUPPORTED;
    Activity activity("cublasSgemm");
    return gemm_checked(ta, tb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
}

EXPORT cublasStatus_t cublasSgemmStridedBatched(BlasHandle* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                                                long long sa, const float* b, int ldb, long long sb, const float* beta, float* c, int ldc,
                                                long long sc, int batch) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (sticky()) return CUBLAS_STATUS_NOT_SUPPORTED;
    Activity activity("cublasSgemmStridedBatched");
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = gemm_checked(ta, tb, m, n, k, *alpha, a + i * sa, lda, b + i * sb, ldb, *beta, c + i * sc, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// cublasGemmEx / cublasGemmStridedBatchedEx for the combinations ucgm uses: A and B both
// f32 or both bf16 (CUDA_R_32F = 0, CUDA_R_16BF = 14), C f32, f32 compute
// (CUBLAS_COMPUTE_32F = 68 or its TF32 variant 77), host f32 alpha and beta.
enum : int { CUDA_R_32F = 0, CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };

static cublasStatus_t gemm_ex_batched(int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int atype, int lda, long long sa,
                                      const void* b, int btype, int ldb, long long sb, const void* beta, void* c, int ctype, int ldc,
                                      long long sc, int batch, int compute) {
    if (!alpha || !beta || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (ctype != CUDA_R_32F || atype != btype || (atype != CUDA_R_32F && atype != CUDA_R_16BF)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (sticky()) return CUBLAS_STATUS_NOT_SUPPORTED;
    const float al = *(const float*)alpha, be = *(const float*)beta;
    Activity activity("cublasGemmEx / cublasGemmStridedBatchedEx");
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s;
        float* ci = (float*)c + i * sc;
        if (atype == CUDA_R_16BF)
            s = gemm_checked(ta, tb, m, n, k, al, (const uint16_t*)a + i * sa, lda, (const uint16_t*)b + i * sb, ldb, be, ci, ldc);
        else
            s = gemm_checked(ta, tb, m, n, k, al, (const float*)a + i * sa, lda, (const float*)b + i * sb, ldb, be, ci, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasGemmEx(BlasHandle* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int atype, int lda,
                                   const void* b, int btype, int ldb, const void* beta, void* c, int ctype, int ldc, int compute, int algo) {
    (void)algo;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    return gemm_ex_batched(ta, tb, m, n, k, alpha, a, atype, lda, 0, b, btype, ldb, 0, beta, c, ctype, ldc, 0, 1, compute);
}

EXPORT cublasStatus_t cublasGemmStridedBatchedEx(BlasHandle* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int atype,
                                                 int lda, long long sa, const void* b, int btype, int ldb, long long sb, const void* beta, void* c,
                                                 int ctype, int ldc, long long sc, int batch, int compute, int algo) {
    (void)algo;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    return gemm_ex_batched(ta, tb, m, n, k, alpha, a, atype, lda, sa, b, btype, ldb, sb, beta, c, ctype, ldc, sc, batch, compute);
}
