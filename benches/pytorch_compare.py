#!/usr/bin/env python3
"""Side-by-side CPU comparison: ucgm vs PyTorch float32 eager on the same machine, in
one run. Runs the same configurations as `benches/cpu.rs` (tiny at batch 1 and 32,
SiT-S/2 at batch 1 and 8; training steps with AdamW for tiny@32 and S/2@8), then prints
ms per image for both and the speed-up ratio.

    python3 benches/pytorch_compare.py            # needs torch for the live PyTorch column
    python3 benches/pytorch_compare.py --recorded # compare with the PyTorch numbers recorded
                                                  # on this machine type (issue #2)

The PyTorch model is a plain DiT/SiT (LayerNorm without affine, GELU-tanh MLP, adaLN-Zero),
the same network as ucgm's SiT; threads = all cores (torch.set_num_threads).
"""
import argparse
import math
import os
import re
import subprocess
import sys
import time

# PyTorch 2.x eager float32, 2 cores, measured on this machine type (issue #2).
RECORDED = {
    ("cpu_forward", "tiny", 1): 2.95,
    ("cpu_forward", "tiny", 32): 1.64,
    ("cpu_forward", "S/2", 1): 106.0,
    ("cpu_forward", "S/2", 8): 99.0,
    ("cpu_train_step", "tiny", 32): 137.0 / 32,
    ("cpu_train_step", "S/2", 8): 2250.0 / 8,
}
CASES = [
    ("cpu_forward", "tiny", 1), ("cpu_forward", "tiny", 32), ("cpu_forward", "S/2", 1), ("cpu_forward", "S/2", 8),
    ("cpu_train_step", "tiny", 32), ("cpu_train_step", "S/2", 8),
]
SHAPES = {"tiny": dict(input_size=16, channels=4, patch=2, hidden=128, depth=4, heads=4, classes=10),
          "S/2": dict(input_size=32, channels=4, patch=2, hidden=384, depth=12, heads=6, classes=1000)}


def torch_times(reps):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count())

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

    out = {}
    for kind, name, batch in CASES:
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
                with torch.no_grad():
                    m(x, t, y)
        else:
            opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)

            def step():
                opt.zero_grad(set_to_none=True)
                ((m(x, t, y) - x) ** 2).mean().backward()
                opt.step()
        step()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        out[(kind, name, batch)] = sorted(ts)[len(ts) // 2] * 1e3 / batch
    return out


def ucgm_times():
    env = dict(os.environ)
    r = subprocess.run(["cargo", "bench", "--bench", "cpu", "--", "--summary-only"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"cargo bench failed:\n{r.stderr[-2000:]}")
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(cpu_\w+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", line.strip())
        if m:
            out[(m.group(1), m.group(2), int(m.group(3)))] = float(m.group(4))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recorded", action="store_true", help="use the recorded PyTorch numbers instead of running torch")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    ref, label = None, "PyTorch (live)"
    if not args.recorded:
        try:
            ref = torch_times(args.reps)
        except ImportError:
            print("torch is not installed: comparing with the recorded PyTorch numbers")
    if ref is None:
        ref, label = RECORDED, "PyTorch (recorded)"
    ours = ucgm_times()
    print(f"\n{'bench':<16} {'model':<6} {'batch':>5} {'ucgm ms/img':>12} {label + ' ms/img':>26} {'speed-up':>9}")
    for key in CASES:
        o, p = ours.get(key), ref.get(key)
        if o is None or p is None:
            continue
        print(f"{key[0]:<16} {key[1]:<6} {key[2]:>5} {o:>12.2f} {p:>26.2f} {p / o:>8.2f}x")


if __name__ == "__main__":
    main()
