"""Helpers shared by the side-by-side comparison scripts (`pytorch_compare.py`,
`pytorch_compare_vae.py`, `pytorch_fid_compare.py`): build a ucgm example or bench binary
and run it once, reading the milliseconds and CPU seconds it prints; the peak resident set
of a process measured the same way as `benches/cpu.rs` does; the machine's description for
a result's header."""
import argparse
import json
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


def build_bench(name):
    """`cargo bench --bench NAME --no-run` (compiled once, before any timing); returns
    the bench executable's path."""
    r = subprocess.run(["cargo", "bench", "--bench", name, "--no-run", "--message-format=json"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"cargo bench --no-run failed:\n{r.stderr[-2000:]}")
    for line in r.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == name \
                and "bench" in msg["target"].get("kind", []) and msg.get("executable"):
            return msg["executable"]
    sys.exit(f"cargo bench --no-run printed no executable for the bench {name}")


def reset_peak_rss():
    """Resets this process's peak resident set (VmHWM) to its current one (Linux: `5`
    written to /proc/self/clear_refs), as `benches/cpu.rs` does before a row's warm-up, so
    the peak covers the runs and not the setup. Returns False where unsupported (the peak
    then includes the setup)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes():
    """This process's peak resident set (VmHWM) in bytes; 0 where unknown."""
    return _status_bytes("VmHWM")


def current_rss_bytes():
    """This process's resident set now (VmRSS) in bytes; 0 where unknown."""
    return _status_bytes("VmRSS")


def machine_header():
    """(UTC date from `date -u`, CPU model name, logical CPUs, ucgm commit with `-dirty`
    when the tree has local changes)."""
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return date, cpu, os.cpu_count(), commit


def interleave_args(description=None):
    """The options every comparison shares: --threads (both sides), --rounds (interleaved
    rounds), --reps (timed runs per measurement, after one warm-up)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--threads", type=int, default=2, help="threads on both sides (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per measurement, after one warm-up (default 5)")
    return ap
