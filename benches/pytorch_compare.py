#!/usr/bin/env python3
"""Side-by-side CPU comparison: ucgm vs PyTorch float32 eager on the same machine, in the
same window, row by row. The rows are those of `benches/cpu.rs`: the forward of the tiny
network at batch 1 and 32 and of SiT-S/2 at batch 1 and 8, and the training step
(forward + backward + AdamW) of tiny@32 and S/2@8. (The SD-VAE rows are compared by
`pytorch_compare_vae.py`.)

    /work/venv/bin/python benches/pytorch_compare.py                 # 2 threads, 3 rounds of 5 reps
    /work/venv/bin/python benches/pytorch_compare.py --markdown      # the table as Markdown
    /work/venv/bin/python benches/pytorch_compare.py --rounds 1 --reps 1 --rows 0   # quick check
    /work/venv/bin/python benches/pytorch_compare.py --bf16          # forward rows in bf16 on both sides

`--bf16` compares the forward rows in bf16: ucgm's CPU bf16 inference mode
(`UCGM_BENCH_BF16=1`: bf16 Linear weights, bf16 products with f32 accumulation) against
PyTorch's `torch.autocast("cpu", dtype=torch.bfloat16)` over the same f32 model; each
side's f32 time is measured in the same rounds too, so the table also shows what bf16
gains on this CPU.

For each row, `--rounds` times, alternating which side goes first: ucgm's row runs in a
fresh process (the `cpu` bench binary with `--row N --reps R`, compiled once before any
timing, threads from `UCGM_BENCH_THREADS`), then (or before) PyTorch's in a fresh Python
process (this script with `--torch-row KIND MODEL BATCH`, `torch.set_num_threads`). Each
process does one warm-up and `--reps` timed runs and reports the median, its CPU seconds
per wall second over the timed runs (how many cores it kept busy), and its peak resident
set (VmHWM, reset after the setup through /proc/self/clear_refs on both sides, so the
figure covers the runs: weights, workspaces, the runtime's libraries; Python + torch or
the ucgm binary included). One process per row and side, so no row masks another's
memory.

Prints per row the median ms/image of each side, the median of the per-round ratios
PyTorch/ucgm (pairs measured minutes apart at most) with their min–max, each side's
cpu/wall and peak RSS (the largest over the rounds), under a header with the date, CPU,
threads, torch version, ucgm commit and the load average at start and end. Timings are
only meaningful on an otherwise quiet machine.

The PyTorch model is a plain DiT/SiT (LayerNorm without affine, GELU-tanh MLP, adaLN-Zero),
the same network as ucgm's SiT.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time

from compare_common import build_bench, current_rss_bytes, machine_header, peak_rss_bytes, reset_peak_rss, interleave_args

CASES = [
    ("cpu_forward", "tiny", 1), ("cpu_forward", "tiny", 32), ("cpu_forward", "S/2", 1), ("cpu_forward", "S/2", 8),
    ("cpu_train_step", "tiny", 32), ("cpu_train_step", "S/2", 8),
]
SHAPES = {"tiny": dict(input_size=16, channels=4, patch=2, hidden=128, depth=4, heads=4, classes=10),
          "S/2": dict(input_size=32, channels=4, patch=2, hidden=384, depth=12, heads=6, classes=1000)}
DISPLAY = {"tiny": "tiny", "S/2": "SiT-S/2"}


def torch_row(kind, name, batch, threads, reps, bf16=False):
    """Child process: one PyTorch row. Prints `TORCH, seconds per call (median), CPU s per
    wall s, peak RSS bytes, torch version, whether the peak excludes the setup, resident
    bytes right after `import torch``."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    base = current_rss_bytes()  # the runtime alone: Python + torch's libraries
    torch.set_num_threads(threads)

    class Block(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.h = h
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            self.ada = nn.Linear(d, 6 * d)

        def forward(self, x, c):
            b, t, d = x.shape
            s1, g1, a1, s2, g2, a2 = self.ada(F.silu(c)).chunk(6, dim=1)
            y = F.layer_norm(x, (d,), eps=1e-6) * (1 + g1[:, None]) + s1[:, None]
            q, k, v = self.qkv(y).reshape(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
            x = x + a1[:, None] * self.proj(o)
            y = F.layer_norm(x, (d,), eps=1e-6) * (1 + g2[:, None]) + s2[:, None]
            return x + a2[:, None] * self.fc2(F.gelu(self.fc1(y), approximate="tanh"))

    class SiT(nn.Module):
        def __init__(self, input_size, channels, patch, hidden, depth, heads, classes):
            super().__init__()
            self.p, self.c = patch, channels
            self.x_emb = nn.Conv2d(channels, hidden, patch, patch)
            self.pos = nn.Parameter(torch.zeros(1, (input_size // patch) ** 2, hidden), requires_grad=False)
            self.t1, self.t2 = nn.Linear(256, hidden), nn.Linear(hidden, hidden)
            self.y = nn.Embedding(classes + 1, hidden)
            self.blocks = nn.ModuleList([Block(hidden, heads) for _ in range(depth)])
            self.f_ada, self.f_lin = nn.Linear(hidden, 2 * hidden), nn.Linear(hidden, patch * patch * channels)

        def forward(self, x, t, y):
            b, _, hgt, _ = x.shape
            h = self.x_emb(x).flatten(2).transpose(1, 2) + self.pos
            f = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
            a = t[:, None] * f[None]
            c = self.t2(F.silu(self.t1(torch.cat([torch.cos(a), torch.sin(a)], -1)))) + self.y(y)
            for blk in self.blocks:
                h = blk(h, c)
            s, g = self.f_ada(F.silu(c)).chunk(2, dim=1)
            h = self.f_lin(F.layer_norm(h, (h.shape[-1],), eps=1e-6) * (1 + g[:, None]) + s[:, None])
            l, p = hgt // self.p, self.p
            h = h.reshape(b, l, l, p, p, self.c).permute(0, 5, 1, 3, 2, 4)
            return h.reshape(b, self.c, l * p, l * p)

    sh = SHAPES[name]
    torch.manual_seed(0)
    m = SiT(**sh)
    for prm in m.parameters():
        prm.data.normal_(0, 0.02)
    x = torch.randn(batch, sh["channels"], sh["input_size"], sh["input_size"])
    t = torch.rand(batch)
    y = torch.randint(0, sh["classes"], (batch,))
    if kind == "cpu_forward":
        def step():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                m(x, t, y)
    else:
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)

        def step():
            opt.zero_grad(set_to_none=True)
            ((m(x, t, y) - x) ** 2).mean().backward()
            opt.step()
    reset = reset_peak_rss()
    step()
    ts, c0 = [], time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    busy = (time.process_time() - c0) / sum(ts)
    print(f"TORCH\t{statistics.median(ts)}\t{busy}\t{peak_rss_bytes()}\t{torch.__version__}\t{int(reset)}\t{base}")


def run_child(cmd, env, tag):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((l for l in r.stdout.splitlines() if l.startswith(tag + "\t")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    return line.split("\t")


def ucgm_rows(exe, env):
    """(bench, model, batch) → the bench binary's `--row` index."""
    return {(f[2], f[3], int(f[4])): int(f[1])
            for f in (l.split("\t") for l in subprocess.run([exe, "--list-rows"], capture_output=True, text=True,
                                                              env=env, check=True).stdout.splitlines())
            if f[0] == "ROWS"}


def ucgm_once(exe, index, reps, env, bf16=False):
    """(ms per call, cpu/wall, peak RSS bytes) of one `--row` process."""
    env = dict(env, UCGM_BENCH_BF16="1" if bf16 else "0")
    f = run_child([exe, "--row", str(index), "--reps", str(reps)], env, "ROW")
    return float(f[4]) * 1e3, float(f[7]), int(f[6])


def torch_once(case, threads, reps, bf16=False):
    """(ms per call, cpu/wall, peak RSS bytes, torch version, peak excludes setup, RSS
    bytes after `import torch`)."""
    kind, name, batch = case
    f = run_child([sys.executable, os.path.abspath(__file__), "--torch-row", kind, name, str(batch),
                   "--threads", str(threads), "--reps", str(reps)] + (["--bf16"] if bf16 else []),
                  dict(os.environ), "TORCH")
    return float(f[1]) * 1e3, float(f[2]), int(f[3]), f[4], f[5] == "1", int(f[6])


def main():
    ap = interleave_args(__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default=None, help="comma-separated indices into the rows (default: all %d)" % len(CASES))
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    ap.add_argument("--bf16", action="store_true", help="forward rows in bf16 on both sides (ucgm's bf16 mode vs "
                    "PyTorch autocast), each side's f32 time measured beside it")
    ap.add_argument("--torch-row", nargs=3, metavar=("KIND", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_row:
        kind, name, batch = args.torch_row
        torch_row(kind, name, int(batch), args.threads, max(1, args.reps), args.bf16)
        return
    if args.rounds < 1 or args.reps < 1 or args.threads < 1:
        sys.exit("--rounds, --reps and --threads must be at least 1")
    cases = CASES if args.rows is None else [CASES[int(i)] for i in args.rows.split(",")]
    if args.bf16:
        cases = [c for c in cases if c[0] == "cpu_forward"]

    print("building the cpu bench (cargo bench --bench cpu --no-run) ...", file=sys.stderr, flush=True)
    exe = build_bench("cpu")
    env = dict(os.environ, UCGM_BENCH_THREADS=str(args.threads))
    env.pop("UCGM_BENCH_QUICK", None)
    index = ucgm_rows(exe, env)
    date, cpu, ncpu, commit = machine_header()
    load0 = os.getloadavg()

    res, torch_version, reset_ok, torch_base = [], None, True, []
    for case in cases:
        u, t, u32, t32 = [], [], [], []
        for rnd in range(args.rounds):
            sides = ["ucgm", "torch"] if rnd % 2 == 0 else ["torch", "ucgm"]
            for side in sides:
                if side == "ucgm":
                    u.append(ucgm_once(exe, index[case], args.reps, env, args.bf16))
                    if args.bf16:
                        u32.append(ucgm_once(exe, index[case], args.reps, env))
                else:
                    *meas, torch_version, reset, base = torch_once(case, args.threads, args.reps, args.bf16)
                    reset_ok &= reset
                    torch_base.append(base)
                    t.append(tuple(meas))
                    if args.bf16:
                        t32.append(torch_once(case, args.threads, args.reps)[0])
            print(f"{case[0]} {case[1]} b{case[2]} round {rnd + 1} ({sides[0]} first): "
                  f"ucgm {u[-1][0] / case[2]:.2f} ms/image, PyTorch {t[-1][0] / case[2]:.2f} ms/image"
                  + (f" (f32: ucgm {u32[-1][0] / case[2]:.2f}, PyTorch {t32[-1] / case[2]:.2f})" if args.bf16 else ""),
                  file=sys.stderr, flush=True)
        ratios = [tt[0] / uu[0] for uu, tt in zip(u, t)]
        res.append((case, u, t, ratios, u32, t32))
    load1 = os.getloadavg()

    med = statistics.median
    mib = lambda b: f"{b / 2**20:.0f}" if b else "–"  # noqa: E731
    la = lambda l: " ".join(f"{v:.2f}" for v in l)  # noqa: E731
    header = [
        (f"ucgm bf16 mode vs PyTorch {torch_version} bf16 autocast (eager), CPU, {date}" if args.bf16
         else f"ucgm vs PyTorch {torch_version} float32 eager, CPU, {date}"),
        f"CPU: {cpu} ({ncpu} logical CPUs); {args.threads} threads on each side; ucgm {commit}",
        f"load average (1/5/15 min) at start {la(load0)}, at end {la(load1)}",
        f"median of {args.rounds} interleaved rounds (first side alternating), each a fresh process per side "
        f"with 1 warm-up + {args.reps} timed runs; speed-up = median of the per-round PyTorch/ucgm ratios [min–max]; "
        f"cpu/wall = CPU seconds per wall second over the timed runs; peak RSS = VmHWM, "
        + ("reset after the setup (clear_refs), largest over the rounds" if reset_ok
           else "NOT reset (clear_refs unavailable): includes the setup, largest over the rounds")
        + f"; of PyTorch's, {mib(med(torch_base))} MiB are resident right after `import torch`",
    ]
    cols = ["bench", "model", "batch", "ucgm ms/image", "PyTorch ms/image", "speed-up [min–max]",
            "ucgm cpu/wall", "PyTorch cpu/wall", "ucgm peak RSS MiB", "PyTorch peak RSS MiB"]
    if args.bf16:
        cols += ["ucgm f32 ms/image", "PyTorch f32 ms/image"]
    table = []
    for (kind, name, batch), u, t, ratios, u32, t32 in res:
        table.append([
            kind, DISPLAY[name], str(batch),
            f"{med(x[0] for x in u) / batch:.2f}", f"{med(x[0] for x in t) / batch:.2f}",
            f"{med(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}]",
            f"{med(x[1] for x in u):.2f}", f"{med(x[1] for x in t):.2f}",
            mib(max(x[2] for x in u)), mib(max(x[2] for x in t)),
        ] + ([f"{med(x[0] for x in u32) / batch:.2f}", f"{med(t32) / batch:.2f}"] if args.bf16 else []))
    if args.markdown:
        print("\n".join(h + "  " for h in header[:-1]) + "\n" + header[-1] + "\n")
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" for _ in cols) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        print("\n" + "\n".join(header))
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
        for row in table:
            print("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
