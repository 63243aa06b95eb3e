#!/usr/bin/env python3
"""Convert a PyTorch UCGM / SiT / LightningDiT / DDT checkpoint (.pt) into a safetensors
weights file that `ucgm` loads with no renaming.

    python3 scripts/convert_pt.py CKPT.pt OUT.safetensors [--key ema] \
        [--model TiT-XL/2 --input-size 32 --in-channels 4 --num-classes 1000]

    # the released pre-trained networks UCGM-S is applied to in the paper:
    python3 scripts/convert_pt.py lightningdit-xl-imagenet256-800ep.pt ld.safetensors \
        --model LightningDiT-XL/1 --input-size 16 --in-channels 32
    python3 scripts/convert_pt.py ddt_xl.pt ddt.safetensors --model DDT-XL/2 --input-size 32

* The reference's training checkpoints hold `model`, `ema`, `opt`, `unigen`, `config`;
  `--key ema` (the default when present) picks the sampling EMA weights, `--key model`
  the online weights. A bare state_dict is used as is.
* `module.` (DDP) and `_orig_mod.` (torch.compile) prefixes are stripped.
* Tensors are written as float32 (use --dtype bf16/f16 to halve the file; ucgm converts
  on load).
* With --model, the configuration is stored in the `ucgm_config` metadata; without it,
  ucgm infers the configuration from the tensor shapes (and needs --heads for widths
  that are not a named size). DDT weights do not record their patch size, input size or
  encoder depth: convert them with --model DDT-XL/2 (or sample with `ucgm sample
  --config` and the reference's sampling config).

Needs: torch, safetensors (pip install torch safetensors).
"""
import argparse
import json
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--key", default=None, help="checkpoint entry to convert (default: ema, else model, else the whole file)")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    p.add_argument("--model", default=None, help="reference model name, e.g. TiT-XL/2, SiT-XL/2, LightningDiT-XL/1, DDT-XL/2")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    args = p.parse_args()

    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as e:  # pragma: no cover
        print(f"error: this script needs torch and safetensors ({e})", file=sys.stderr)
        return 2

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    state = ckpt
    if isinstance(ckpt, dict):
        key = args.key or next((k for k in ("ema", "model") if k in ckpt), None)
        if key is not None:
            if key not in ckpt:
                print(f"error: {args.checkpoint} has no entry {key!r} (entries: {sorted(ckpt)})", file=sys.stderr)
                return 2
            state = ckpt[key]
    if not isinstance(state, dict):
        print("error: could not find a state_dict in the checkpoint", file=sys.stderr)
        return 2

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    out = {}
    for name, t in state.items():
        if not torch.is_tensor(t):
            continue
        for prefix in ("module.", "_orig_mod."):
            while name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = t.detach().to(dtype).contiguous()

    meta = {"format": "pt"}
    if args.model:
        family, rest = args.model.split("-", 1)
        size, patch = rest.split("/")
        sizes = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16),
                 "1P0B": (24, 1536, 24), "1P6B": (28, 1792, 28)}
        depth, hidden, heads = sizes[size.upper()]
        arch = {"sit": "Sit", "tit": "Tit", "lightningdit": "LightningDit",
                "ddt": {"Ddt": {"encoder_depth": 22}}}[family.lower()]
        meta["ucgm_config"] = json.dumps({
            "arch": arch,
            "input_size": args.input_size, "in_channels": args.in_channels, "patch": int(patch),
            "hidden": hidden, "depth": depth, "heads": heads, "num_classes": args.num_classes,
        })
    save_file(out, args.output, metadata=meta)
    print(f"wrote {len(out)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
