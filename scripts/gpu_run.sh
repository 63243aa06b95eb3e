#!/usr/bin/env bash
# Stages the CUDA tests for the lent GPU machine (see ../shared/device.md).
#
# The GPU machine has no Rust toolchain and no network: build here, carry binaries.
# On the CPU machine, from the repository root:
#
#     scripts/gpu_run.sh
#
# builds the CUDA test binaries (`cargo test --release --features cuda --no-run`: every
# tests/cuda_*.rs, tests/capi_backend.rs (CUDA handles through the C ABI), plus the
# library's unit tests, whose backend::cuda ones compile the kernels with NVRTC), strips their debug info, and stages them in .gpu/ (git-ignored)
# with a copy of ../shared/reference and .gpu/run.sh. Then, with the device tool:
#
#     run(command="bash .gpu/run.sh", carry=[".gpu"], timeout_s=420)
#
# run.sh sets LD_LIBRARY_PATH as device.md says (CUDA 13.0 libraries, never the `stubs`
# folder), runs every binary with UCGM_REQUIRE_CUDA=1 (a skipped GPU test fails) and
# writes $OUT/summary.txt, $OUT/logs/<binary>.log and $OUT/nvidia-smi.txt. Options, as
# environment variables in the device command: PROPTEST_CASES (default 24),
# UCGM_TEST_THREADS (default 1: one CUDA fault then cannot blur other tests' logs),
# UCGM_TEST_TIMEOUT (seconds per binary, default 240), and test-name filters as
# arguments: `bash .gpu/run.sh attention` runs only tests whose names contain "attention".
#
# The staged folder must stay under the tool's 64 MiB carry limit; this script prints
# its size and fails if it is over.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
stage="$root/.gpu"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/reference"

echo "building CUDA test binaries (release, feature cuda)…" >&2
cargo test --release --features cuda --no-run --message-format=json --lib --test 'cuda_*' --test capi_backend >"$stage/build.json"

# Test executables: compiler artifacts built with the test profile flag.
mapfile -t exes < <(jq -r 'select(.reason == "compiler-artifact" and .profile.test == true and .executable != null) | .executable' "$stage/build.json")
if [ "${#exes[@]}" -eq 0 ]; then
    echo "no test executables found in cargo's output" >&2
    exit 1
fi
for exe in "${exes[@]}"; do
    name="$(basename "$exe")"
    cp "$exe" "$stage/bin/$name"
    strip --strip-debug "$stage/bin/$name"
    echo "staged $name ($(du -h "$stage/bin/$name" | cut -f1))" >&2
done
rm -f "$stage/build.json"

ref="$root/../shared/reference"
if [ -d "$ref" ]; then
    cp "$ref"/*.safetensors "$stage/reference/"
else
    echo "warning: $ref not found; the reference tests will fail on the GPU machine" >&2
fi

cat >"$stage/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root: every staged CUDA test binary with
# UCGM_REQUIRE_CUDA=1. Arguments are passed to every binary as test-name filters.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/.gpu/out}"
mkdir -p "$out/logs"
export LD_LIBRARY_PATH="/usr/local/cuda-13.0/targets/x86_64-linux/lib:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export UCGM_REQUIRE_CUDA=1
export UCGM_REFERENCE_DIR="$PWD/.gpu/reference"
export RUST_BACKTRACE=1
export PROPTEST_CASES="${PROPTEST_CASES:-24}"
threads="${UCGM_TEST_THREADS:-1}"
limit="${UCGM_TEST_TIMEOUT:-240}"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
: >"$out/summary.txt"
status=0
for bin in .gpu/bin/*; do
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
exit "$status"
RUN
chmod +x "$stage/run.sh"

size_kib=$(du -sk "$stage" | cut -f1)
echo "staged $stage: $((size_kib / 1024)) MiB" >&2
if [ "$size_kib" -gt $((60 * 1024)) ]; then
    echo "error: .gpu is over the device tool's carry limit (64 MiB)" >&2
    exit 1
fi
