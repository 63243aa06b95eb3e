#!/usr/bin/env python3
"""Side-by-side CPU comparison of the FID Inception: ucgm (`examples/inception_bench.rs`)
vs pytorch-fid's InceptionV3 (use_fid_inception=True, resize_input, normalize_input) in
PyTorch float32 eager, same threads, same inputs (batch 8 of 64x64 images, resized to
299 inside), interleaved in one run (ucgm, PyTorch, ucgm, ...) so drifts of the machine
hit both alike; then the 2048x2048 Frechet distance (scipy sqrtm) once.

    /work/venv/bin/python benches/pytorch_fid_compare.py [--threads 2] [--rounds 3] [--reps 5]

Prints the median ms per image of each side, the speed-up (PyTorch / ucgm) and each
side's CPU time per wall second (how many cores it kept busy). Timings are only
meaningful on an otherwise quiet machine.
"""
import os
import statistics
import time

from compare_common import ROOT, build_example, run_once, interleave_args



def build():
    return build_example("inception_bench")


def ucgm_once(exe, threads, reps):
    return run_once(exe, [threads, reps], r"ucgm features: ([\d.]+) ms/image wall, ([\d.]+) s cpu")


def torch_model(threads):
    import torch
    from pytorch_fid import inception as pi
    from pytorch_fid.inception import InceptionV3
    from safetensors.torch import load_file

    torch.set_num_threads(threads)
    # The FID Inception with the shared random weights instead of a download.
    ref = os.path.join(ROOT, "..", "shared", "reference", "fid_inception_random.safetensors")
    pi.load_state_dict_from_url = lambda *a, **k: load_file(ref)
    model = InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    return torch, model


def torch_once(torch, model, reps, batch=8):
    x = torch.rand(batch, 3, 64, 64)
    with torch.no_grad():
        model(x)
        ts, c0 = [], time.process_time()
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            ts.append(time.perf_counter() - t0)
        cpu = (time.process_time() - c0) / reps
    ms = statistics.median(ts) * 1e3 / batch
    return ms, (cpu / batch) / (ms / 1e3)


def main():
    ap = interleave_args()
    args = ap.parse_args()
    exe = build()
    torch, model = torch_model(args.threads)
    u, t, ub, tb = [], [], [], []
    for rnd in range(args.rounds):
        ms, busy = ucgm_once(exe, args.threads, args.reps)
        u.append(ms)
        ub.append(busy)
        ms, busy = torch_once(torch, model, args.reps)
        t.append(ms)
        tb.append(busy)
        print(f"round {rnd + 1}: ucgm {u[-1]:.1f} ms/image, pytorch-fid {t[-1]:.1f} ms/image", flush=True)
    um, tm = statistics.median(u), statistics.median(t)
    print(f"\nFID Inception features, {args.threads} threads, batch 8 of 64x64, median of {args.rounds} rounds x {args.reps} reps")
    print(f"{'side':<12} {'ms/image':>9} {'cpu/wall':>9}")
    print(f"{'ucgm':<12} {um:>9.1f} {statistics.median(ub):>9.2f}")
    print(f"{'pytorch-fid':<12} {tm:>9.1f} {statistics.median(tb):>9.2f}")
    print(f"speed-up (pytorch-fid / ucgm): {tm / um:.2f}x")
    import numpy as np
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4096, 2048)), rng.standard_normal((4096, 2048))
    ma, sa, mb, sb = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    t0 = time.perf_counter()
    calculate_frechet_distance(ma, sa, mb, sb)
    print(f"pytorch-fid frechet distance 2048: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
