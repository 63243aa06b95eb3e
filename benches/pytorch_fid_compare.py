#!/usr/bin/env python3
"""Times pytorch-fid's FID Inception (use_fid_inception=True) on the inputs of
`benches/fid.rs` (batch 8 of 64x64 images, resized to 299) with the same number of
threads, and the 2048x2048 Frechet distance (scipy sqrtm), for comparison with
`cargo bench --bench fid`. Timings need a quiet machine.

    /work/venv/bin/python benches/pytorch_fid_compare.py [threads] [repeats]
"""
import sys
import time

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import InceptionV3
from safetensors.torch import load_file

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.set_num_threads(threads)
# The FID Inception with the shared random weights instead of a download.
from pytorch_fid import inception as pi

pi.load_state_dict_from_url = lambda *a, **k: load_file("../shared/reference/fid_inception_random.safetensors")
model = InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
model.eval()
x = torch.rand(8, 3, 64, 64)
with torch.no_grad():
    model(x)
    t = time.perf_counter()
    for _ in range(repeats):
        model(x)
    dt = (time.perf_counter() - t) / repeats
print(f"pytorch-fid features, {threads} threads, batch 8: {dt / 8 * 1e3:.1f} ms/image")
rng = np.random.default_rng(0)
a, b = rng.standard_normal((4096, 2048)), rng.standard_normal((4096, 2048))
ma, sa, mb, sb = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
t = time.perf_counter()
calculate_frechet_distance(ma, sa, mb, sb)
print(f"pytorch-fid frechet distance 2048: {time.perf_counter() - t:.2f} s")
