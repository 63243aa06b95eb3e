#!/usr/bin/env bash
# Runs the CUDA backend's tests on the CPU, through a host emulator of the CUDA driver,
# NVRTC and cuBLAS (tests/cuda_emu/: the kernels are compiled by the host C++ compiler and
# every GPU thread runs as a fiber with real barrier and warp-shuffle semantics).
#
#     scripts/cuda_emu.sh                 # build the emulator, run the CUDA tests on it
#     scripts/cuda_emu.sh --build-only    # only build target/cuda-emu/lib*.so
#     scripts/cuda_emu.sh -- <cargo test args>   # e.g. -- --test cuda_ops attention
#
# The emulator is a test tool, not a backend: it checks the CUDA backend's logic (kernel
# indexing, barriers, reductions, launch shapes, cuBLAS argument plans, the op sequence
# of the model, sampler and trainer) on machines without a GPU. Speed, memory limits and
# real-hardware numerics are checked on a GPU (scripts/gpu_run.sh).
#
# The tests run with UCGM_REQUIRE_CUDA=1, so a test that would skip fails instead.
# The tests run once per thread order (UCGM_CUDA_EMU_ORDERS, default "reverse forward
# random:1"): blocks and the threads of a block run one at a time between barriers, and
# each order exposes other missing barriers. Environment: PROPTEST_CASES (default 8
# here), UCGM_CUDA_EMU_CXX (compiler for the kernels, default c++), UCGM_CUDA_EMU_CACHE
# (where compiled kernel objects are kept).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="$root/target/cuda-emu"
if [ "$(uname -m)" != "x86_64" ]; then
    echo "cuda-emu: skipped: the emulator's fiber switch is written for x86-64 (this is $(uname -m))" >&2
    exit 0
fi
mkdir -p "$out"
cxx="${CXX:-c++}"

"$cxx" -std=c++17 -O2 -g -fPIC -shared -Wall -Wextra -Wno-unused-parameter \
    -DUCGM_EMU_KERNEL_HEADER="\"$root/tests/cuda_emu/emu_kernel.hpp\"" \
    -o "$out/libucgm_cuda_emu.so" "$root/tests/cuda_emu/cuda_emu.cpp" -ldl
for lib in cuda nvrtc cublas; do
    ln -sf libucgm_cuda_emu.so "$out/lib$lib.so"
done
echo "cuda-emu: built $out/libucgm_cuda_emu.so (as libcuda.so, libnvrtc.so, libcublas.so)" >&2

# The emulator's own properties first (barriers, shuffles, deadlock, poisoning, bounds,
# cuBLAS checks, fault reports): the CUDA tests below are only as good as these.
"$cxx" -std=c++17 -O1 -g -Wall -Wextra -o "$out/selftest" "$root/tests/cuda_emu/selftest.cpp" \
    -L"$out" -lucgm_cuda_emu -Wl,-rpath,"$out"
UCGM_CUDA_EMU_CACHE="${UCGM_CUDA_EMU_CACHE:-$out/kernels}" "$out/selftest"

if [ "${1:-}" = "--build-only" ]; then
    exit 0
fi
# Each entry is one `cargo test` argument list.
if [ "${1:-}" = "--" ]; then
    shift
    runs=("$*")
else
    runs=("--lib backend::cuda" "--test cuda_ops --test cuda_model --test capi_backend")
fi

export LD_LIBRARY_PATH="$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export UCGM_REQUIRE_CUDA=1
export PROPTEST_CASES="${PROPTEST_CASES:-8}"
export UCGM_CUDA_EMU_CACHE="${UCGM_CUDA_EMU_CACHE:-$out/kernels}"
mkdir -p "$UCGM_CUDA_EMU_CACHE"
# Each order exposes other missing barriers (see pass_order in cuda_emu.cpp).
orders="${UCGM_CUDA_EMU_ORDERS:-reverse forward random:1}"
for order in $orders; do
    echo "cuda-emu: thread/block order $order" >&2
    for run in "${runs[@]}"; do
        # shellcheck disable=SC2086 # each entry is a word list on purpose
        UCGM_CUDA_EMU_ORDER="$order" cargo test --release --features cuda $run
    done
done

# The GPU benchmark's mechanics (one backend per precision, device-resident inputs, the
# train step, the table) on a tiny model: a failure here would otherwise first show on the
# GPU machine, whose minutes are few. Default runs only.
if [ "${#runs[@]}" -eq 2 ] && [ "${runs[0]}" = "--lib backend::cuda" ]; then
    echo "cuda-emu: benches/cuda.rs in smoke mode" >&2
    UCGM_BENCH_SMOKE=1 UCGM_BENCH_QUICK=1 cargo bench --features cuda --bench cuda -- --summary-only
fi
