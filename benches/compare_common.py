"""Helpers shared by the side-by-side comparison scripts (`pytorch_compare_vae.py`,
`pytorch_fid_compare.py`): build a ucgm example binary and run it once, reading the
milliseconds and CPU seconds it prints."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_example(name):
    """`cargo build --release --example NAME`; returns the executable's path."""
    r = subprocess.run(["cargo", "build", "--release", "--example", name], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"cargo build failed:\n{r.stderr[-2000:]}")
    return os.path.join(ROOT, "target", "release", "examples", name)


def run_once(exe, args, pattern):
    """Runs `exe args`; `pattern` captures (ms, cpu seconds) from its output. Returns
    (ms, CPU seconds per wall second)."""
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{os.path.basename(exe)} failed:\n{r.stderr[-2000:]}")
    m = re.search(pattern, r.stdout)
    ms, cpu = float(m.group(1)), float(m.group(2))
    return ms, cpu / (ms / 1e3)
