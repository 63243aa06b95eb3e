#!/usr/bin/env python3
"""Makes tests/data/fid_compat_reference.safetensors: torch-fidelity's
`inception-v3-compat` feature extractor (uint8 input, TF1-style bilinear resize,
(x - 128)/128), loaded with the shared random FID Inception weights, run on random uint8
images of a non-square size (upsampled to 299x299). Stores `images` (the uint8 values as
float32, [3, 3, 45, 37]), `pool3` ('2048'), `logits` and `logits_unbiased` (what
torch-fidelity's Inception Score uses).

    /work/venv/bin/python scripts/make_fid_compat_reference.py \
        ../shared/reference/fid_inception_random.safetensors tests/data/fid_compat_reference.safetensors
"""
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3


def main(weights, out):
    state = load_file(weights)
    with tempfile.NamedTemporaryFile(suffix=".pth") as f:
        torch.save(state, f.name)
        fe = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased", "logits"], feature_extractor_weights_path=f.name
        )
    g = torch.Generator().manual_seed(20261204)
    images = torch.randint(0, 256, (3, 3, 45, 37), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        pool3, unbiased, logits = fe(images)
    save_file(
        {
            "images": images.float().contiguous(),
            "pool3": pool3.float().contiguous(),
            "logits": logits.float().contiguous(),
            "logits_unbiased": unbiased.float().contiguous(),
        },
        out,
        metadata={"source": "torch-fidelity inception-v3-compat, random FID Inception weights"},
    )
    print(out, pool3.shape, logits.shape)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
