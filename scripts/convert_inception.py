#!/usr/bin/env python3
"""Converts pytorch-fid's FID Inception weights (`pt_inception-2015-12-05-6726825d.pth`,
the state_dict of torchvision's Inception3 with the FID blocks) to safetensors for
`ucgm fid` / `ucgm eval --inception`. float32 tensors are kept as they are; the
BatchNorm `num_batches_tracked` counters (int64, unused at inference) are dropped if
present. Names are kept (`Conv2d_1a_3x3.conv.weight`, ..., `fc.weight`, `fc.bias`).

    python scripts/convert_inception.py pt_inception-2015-12-05-6726825d.pth fid_inception.safetensors
"""
import sys

import torch
from safetensors.torch import save_file


def main(src, dst):
    state = torch.load(src, map_location="cpu", weights_only=True)
    if "state_dict" in state:
        state = state["state_dict"]
    out = {}
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if not t.is_floating_point():
            raise SystemExit(f"unexpected non-float tensor {name} ({t.dtype})")
        out[name] = t.detach().to(torch.float32).contiguous()
    need = ["Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.bn.running_var", "fc.weight", "fc.bias"]
    missing = [n for n in need if n not in out]
    if missing:
        raise SystemExit(f"{src} is not the FID Inception state_dict (missing {missing})")
    save_file(out, dst, metadata={"source": "pytorch-fid pt_inception-2015-12-05"})
    print(f"{dst}: {len(out)} tensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
