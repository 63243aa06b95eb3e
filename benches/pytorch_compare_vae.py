#!/usr/bin/env python3
"""Side-by-side CPU comparison of the SD-VAE: ucgm vs diffusers' AutoencoderKL in PyTorch
float32 eager, same threads, same shapes, interleaved in one run (ucgm, PyTorch, ucgm,
PyTorch, ...) so that drifts of the machine hit both alike.

    python3 benches/pytorch_compare_vae.py                 # 2 threads, 3 rounds of 5 reps
    python3 benches/pytorch_compare_vae.py --threads 2 --rounds 1 --reps 1   # quick check

Cases: decode of one 4×32×32 latent to 256×256, encode of one 256×256 image (random
weights in both; the work does not depend on the values). Prints the median ms of each
side, the speed-up (PyTorch / ucgm) and each side's CPU time per wall second (how many
cores it really kept busy). ucgm runs `examples/vae_bench.rs` (built here first).
Timings are only meaningful on an otherwise quiet machine.
"""
import statistics
import time

from compare_common import build_example, run_once, interleave_args

CASES = ["decode", "encode"]


def build():
    return build_example("vae_bench")


def ucgm_once(exe, case, threads, reps):
    return run_once(exe, [case, threads, reps], r"ucgm \w+: ([\d.]+) ms wall, ([\d.]+) s cpu")


def torch_model(threads):
    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()
    return torch, vae


def torch_once(torch, vae, case, reps):
    if case == "decode":
        x = torch.randn(1, 4, 32, 32)
        f = lambda: vae.decode(x).sample  # noqa: E731
    else:
        x = torch.rand(1, 3, 256, 256) * 2 - 1
        f = lambda: vae.encode(x).latent_dist.mean  # noqa: E731
    with torch.no_grad():
        f()
        ts, c0 = [], time.process_time()
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        cpu = (time.process_time() - c0) / reps
    ms = statistics.median(ts) * 1e3
    return ms, cpu / (ms / 1e3)


def main():
    ap = interleave_args()
    args = ap.parse_args()
    exe = build()
    torch, vae = torch_model(args.threads)
    res = {c: {"ucgm": [], "torch": [], "ucgm_cpu": [], "torch_cpu": []} for c in CASES}
    for rnd in range(args.rounds):
        for case in CASES:
            ms, busy = ucgm_once(exe, case, args.threads, args.reps)
            res[case]["ucgm"].append(ms)
            res[case]["ucgm_cpu"].append(busy)
            ms, busy = torch_once(torch, vae, case, args.reps)
            res[case]["torch"].append(ms)
            res[case]["torch_cpu"].append(busy)
            print(f"round {rnd + 1} {case}: ucgm {res[case]['ucgm'][-1]:.1f} ms, PyTorch {ms:.1f} ms", flush=True)
    print(f"\nSD-VAE, {args.threads} threads, median of {args.rounds} rounds × {args.reps} reps (quiet machine needed)")
    print(f"{'case':<28} {'ucgm ms':>9} {'PyTorch ms':>11} {'speed-up':>9} {'ucgm cpu/wall':>14} {'torch cpu/wall':>15}")
    names = {"decode": "decode 4x32x32 -> 256^2", "encode": "encode 256^2 -> 4x32x32"}
    for case in CASES:
        r = res[case]
        u, t = statistics.median(r["ucgm"]), statistics.median(r["torch"])
        print(f"{names[case]:<28} {u:>9.1f} {t:>11.1f} {t / u:>8.2f}x {statistics.median(r['ucgm_cpu']):>14.2f} {statistics.median(r['torch_cpu']):>15.2f}")


if __name__ == "__main__":
    main()
