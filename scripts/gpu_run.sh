#!/usr/bin/env bash
# Stages the CUDA tests and the CUDA benchmark for the lent GPU machine (see
# ../shared/device.md).
#
# The GPU machine has no Rust toolchain and no network: build here, carry binaries.
# On the CPU machine, from the repository root:
#
#     scripts/gpu_run.sh
#
# builds the CUDA test binaries (`cargo test --release --features nccl --no-run`, which
# includes `cuda`: every
# tests/cuda_*.rs, tests/capi_backend.rs (CUDA model and trainer handles through the C
# ABI), plus the library's unit tests, whose backend::cuda ones compile the kernels with
# NVRTC; tests/capi_vae.rs and capi_latent_norm.rs, whose `auto` backend is CUDA there)
# and the benchmark benches/cuda.rs in the same build, strips their debug info,
# and stages them in .gpu/ (git-ignored: tests in .gpu/bin, the benchmark in
# .gpu/bench) with a copy of ../shared/reference and .gpu/run.sh. Then, with the device
# tool:
#
#     run(command="bash .gpu/run.sh", carry=[".gpu"], timeout_s=570)
#
# run.sh sets LD_LIBRARY_PATH as device.md says (CUDA 13.0 libraries, never the `stubs`
# folder), runs every binary with UCGM_REQUIRE_CUDA=1 (a skipped GPU test fails) and
# writes $OUT/summary.txt, $OUT/logs/<binary>.log and $OUT/nvidia-smi.txt. After the
# tests it runs the benchmark in quick mode (`--summary-only`, UCGM_BENCH_QUICK=1: median
# of 3 runs per case) and writes its table to stdout and $OUT/bench.txt; the table's
# rows are printed as they are measured, so a timeout keeps the rows done so far.
# Options, as environment variables in the device command: PROPTEST_CASES (default 24),
# UCGM_TEST_THREADS (default 1: one CUDA fault then cannot blur other tests' logs),
# UCGM_TEST_TIMEOUT (seconds per binary, default 240), UCGM_BENCH_TIMEOUT (seconds for
# the whole benchmark, default 150), UCGM_BENCH_QUICK (default 1; 0 for 10 runs per
# case), UCGM_SKIP_TESTS=1 (benchmark only), UCGM_SKIP_BENCH=1 (tests only), and
# test-name filters as arguments: `bash .gpu/run.sh attention` runs only tests whose
# names contain "attention" (and no benchmark, unless UCGM_SKIP_BENCH=0).
#
# Device time: the lent machine has ~15 minutes in all, its start included. The tests
# take most of it (hence timeout_s=570, under the tool's 600 s per command); the quick
# benchmark should need about a minute, at most UCGM_BENCH_TIMEOUT (8 timed cases, XL/2
# included: 60.7 TFLOP per batch-256 forward, 45.5 TFLOP per batch-64 training step). For a
# rerun of the numbers alone: run(command="UCGM_SKIP_TESTS=1 bash .gpu/run.sh", ...).
#
# The staged folder must stay under the tool's 64 MiB carry limit; this script prints
# its size and fails if it is over.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
stage="$root/.gpu"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/bench" "$stage/reference"

echo "building CUDA test and benchmark binaries (release, feature cuda)…" >&2
cargo test --release --features nccl --no-run --message-format=json --lib --test 'cuda_*' --test capi_backend --test capi_vae --test capi_latent_norm --bench cuda >"$stage/build.json"

# Test executables: compiler artifacts built with the test profile flag, benches aside.
mapfile -t exes < <(jq -r 'select(.reason == "compiler-artifact" and .profile.test == true and .executable != null and (.target.kind | index("bench") | not)) | .executable' "$stage/build.json")
if [ "${#exes[@]}" -eq 0 ]; then
    echo "no test executables found in cargo's output" >&2
    exit 1
fi
for exe in "${exes[@]}"; do
    name="$(basename "$exe")"
    cp "$exe" "$stage/bin/$name"
    strip "$stage/bin/$name"
    echo "staged $name ($(du -h "$stage/bin/$name" | cut -f1))" >&2
done
# The benchmark (harness = false: a plain main, staged under its target name).
bench_exe="$(jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "cuda" and (.target.kind | index("bench"))) | .executable' "$stage/build.json" | tail -n 1)"
if [ -z "$bench_exe" ]; then
    echo "the cuda benchmark executable is missing from cargo's output" >&2
    exit 1
fi
cp "$bench_exe" "$stage/bench/cuda"
strip "$stage/bench/cuda"
echo "staged bench/cuda ($(du -h "$stage/bench/cuda" | cut -f1))" >&2
rm -f "$stage/build.json"
# The command-line tool, for an end-to-end `ucgm demo --backend cuda` after the tests.
cargo build --release --bin ucgm
cp target/release/ucgm "$stage/bench/ucgm"
strip "$stage/bench/ucgm"
echo "staged bench/ucgm ($(du -h "$stage/bench/ucgm" | cut -f1))" >&2

ref="$root/../shared/reference"
if [ -d "$ref" ]; then
    # What the CUDA tests read (the 95 MB random FID Inception is left out: the CUDA
    # Inception test builds its random network in memory).
    cp "$ref"/sit_*.safetensors "$ref"/tit_*.safetensors "$ref"/vae_tiny_*.safetensors "$stage/reference/"
    mkdir -p "$stage/reference/zoo"
    cp "$ref"/zoo/*.safetensors "$ref"/zoo/meta.json "$stage/reference/zoo/"
else
    echo "warning: $ref not found; the reference tests will fail on the GPU machine" >&2
fi

cat >"$stage/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root: every staged CUDA test binary with
# UCGM_REQUIRE_CUDA=1, then the CUDA benchmark (quick summary table). Arguments are
# passed to every test binary as test-name filters.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/.gpu/out}"
mkdir -p "$out/logs"
export LD_LIBRARY_PATH="/usr/local/cuda-13.0/targets/x86_64-linux/lib:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# libnccl (tests/cuda_nccl.rs): the one PyTorch's wheels bring, wherever it lies.
nccl_lib="$(find /opt/torch/.venv /usr/local /usr/lib -name 'libnccl.so*' 2>/dev/null | head -n 1)"
if [ -n "$nccl_lib" ]; then
    export LD_LIBRARY_PATH="$(dirname "$nccl_lib"):$LD_LIBRARY_PATH"
    # cudarc opens "libnccl.so" (or ".so.13"); the wheels ship only "libnccl.so.2".
    if [ ! -e "$(dirname "$nccl_lib")/libnccl.so" ]; then
        mkdir -p .gpu/lib && ln -sf "$nccl_lib" .gpu/lib/libnccl.so
        export LD_LIBRARY_PATH="$PWD/.gpu/lib:$LD_LIBRARY_PATH"
    fi
fi
echo "libnccl: ${nccl_lib:-not found}" >"$out/nccl.txt"
export UCGM_REQUIRE_CUDA=1
export UCGM_REFERENCE_DIR="$PWD/.gpu/reference"
export RUST_BACKTRACE=1
export PROPTEST_CASES="${PROPTEST_CASES:-24}"
threads="${UCGM_TEST_THREADS:-1}"
limit="${UCGM_TEST_TIMEOUT:-240}"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
: >"$out/summary.txt"
status=0
[ "${UCGM_SKIP_TESTS:-0}" = 1 ] || for bin in .gpu/bin/*; do
    name="$(basename "$bin")"
    filters=("$@")
    # The library's unit tests: only the CUDA ones.
    case "$name" in ucgm-*) [ "${#filters[@]}" -eq 0 ] && filters=(backend::cuda) ;; esac
    start=$(date +%s)
    timeout "$limit" "$bin" "${filters[@]}" --test-threads="$threads" --nocapture >"$out/logs/$name.log" 2>&1
    rc=$?
    line="$(grep -E '^test result' "$out/logs/$name.log" | tail -n 1)"
    echo "$name: rc=$rc $(( $(date +%s) - start ))s ${line:-no test result line (crash or timeout; see logs/$name.log)}" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || status=1
done
grep -hE '^(test .* FAILED|thread .* panicked)' "$out"/logs/*.log >"$out/failures.txt" 2>/dev/null || true
# With test-name filters (a focused rerun) the benchmark is skipped unless asked for.
skip_bench="${UCGM_SKIP_BENCH:-$([ "$#" -gt 0 ] && echo 1 || echo 0)}"
if [ "$skip_bench" != 1 ] && [ -x .gpu/bench/cuda ]; then
    bench_limit="${UCGM_BENCH_TIMEOUT:-150}"
    start=$(date +%s)
    # --summary-only: the table alone (no criterion statistics); rows print as measured.
    UCGM_BENCH_QUICK="${UCGM_BENCH_QUICK:-1}" timeout "$bench_limit" .gpu/bench/cuda --summary-only 2>&1 | tee "$out/bench.txt"
    rc=${PIPESTATUS[0]}
    case "$rc" in
        0) note="" ;;
        124) note=" (timed out after ${bench_limit}s: rows above are the cases done)" ;;
        *) note=" (a case failed or CUDA is unavailable: see bench.txt)" ;;
    esac
    echo "bench cuda: rc=$rc $(( $(date +%s) - start ))s$note" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || status=1
fi
# End to end: the demo (train + tune + sample + quality figures) on the GPU, shortened
# (UCGM_DEMO_TIMEOUT, default 150 s; UCGM_SKIP_DEMO=1 skips it). Its log, grids and
# figures come back under $OUT/demo.
if [ "${UCGM_SKIP_DEMO:-$([ "$#" -gt 0 ] && echo 1 || echo 0)}" != 1 ] && [ -x .gpu/bench/ucgm ]; then
    start=$(date +%s)
    timeout "${UCGM_DEMO_TIMEOUT:-150}" .gpu/bench/ucgm demo --backend cuda --out "$out/demo" \
        --multistep-steps "${UCGM_DEMO_STEPS:-2000}" --fewstep-steps 300 >"$out/demo.log" 2>&1
    rc=$?
    tail -n 25 "$out/demo.log"
    echo "demo cuda: rc=$rc $(( $(date +%s) - start ))s" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || status=1
fi
exit "$status"
RUN
chmod +x "$stage/run.sh"

size_kib=$(du -sk "$stage" | cut -f1)
echo "staged $stage: $((size_kib / 1024)) MiB" >&2
if [ "$size_kib" -gt $((60 * 1024)) ]; then
    echo "error: .gpu is over the device tool's carry limit (64 MiB)" >&2
    exit 1
fi
