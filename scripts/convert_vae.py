#!/usr/bin/env python3
"""Convert the reference's VAE files to safetensors for `ucgm encode/decode/sample --vae`.

    # A VA-VAE / E2E-VAE checkpoint (.pt or PyTorch Lightning .ckpt, LDM/taming names):
    python3 scripts/convert_vae.py vae vavae_f16d32.ckpt vavae_f16d32.safetensors
    # The reference's latent statistics (buffers/vaes/stat/{vae}_{res}.pt):
    python3 scripts/convert_vae.py stats vavae_f16d32_256.pt vavae_f16d32_256_stats.safetensors

`vae`: the state_dict is taken from "state_dict" (Lightning), else "model" / "ema" when
they hold tensors, else the top level. Keys that belong to VAE training only are dropped
and listed: `loss.*` (LPIPS + discriminator), `discriminator.*`, the VF-loss projection
(`linear_proj.*`, `foundation_model.*`). `module.` / `_orig_mod.` prefixes are stripped.
Tensors are written as float32 (`--dtype f16/bf16` halves the file; ucgm converts on
load). SD-VAE needs no conversion: diffusers' `diffusion_pytorch_model.safetensors`
(e.g. stabilityai/sd-vae-ft-ema) loads as is, old and new attention names alike.

`stats`: the file is a dict {"mean": [1, C, 1, 1], "std": [1, C, 1, 1]} (the reference's
`ImgLatentDataset.compute_latent_stats`); written with the same tensor names, float32.

Needs: torch, safetensors.
"""
import argparse
import sys

TRAINING_ONLY = ("loss.", "discriminator.", "linear_proj.", "foundation_model.")


def strip(k):
    for p in ("module.", "_orig_mod."):
        while k.startswith(p):
            k = k[len(p):]
    return k


def pick_state_dict(obj, torch):
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "ema"):
            v = obj.get(key)
            if isinstance(v, dict) and v and all(torch.is_tensor(t) for t in v.values()):
                return v, key
    if isinstance(obj, dict) and all(torch.is_tensor(t) for t in obj.values()):
        return obj, None
    raise SystemExit("no state_dict found: expected tensors under 'state_dict', 'model', 'ema' or at the top level")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["vae", "stats"])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    args = p.parse_args()
    import torch
    from safetensors.torch import save_file

    obj = torch.load(args.input, map_location="cpu", weights_only=False)
    if args.kind == "stats":
        if not isinstance(obj, dict) or "mean" not in obj or "std" not in obj:
            raise SystemExit(f"{args.input}: expected a dict with 'mean' and 'std'")
        out = {k: torch.as_tensor(obj[k]).float().contiguous() for k in ("mean", "std")}
        if out["mean"].shape != out["std"].shape:
            raise SystemExit(f"mean {tuple(out['mean'].shape)} and std {tuple(out['std'].shape)} differ")
        save_file(out, args.output, metadata={"source": args.input, "kind": "ucgm latent statistics"})
        print(f"wrote {args.output}: mean/std {tuple(out['mean'].shape)}")
        return 0

    sd, where = pick_state_dict(obj, torch)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    out, dropped = {}, []
    for k, v in sd.items():
        k = strip(k)
        if k.startswith(TRAINING_ONLY):
            dropped.append(k)
            continue
        out[k] = v.detach().to(dtype).contiguous()
    save_file(out, args.output, metadata={"source": args.input})
    print(f"wrote {args.output}: {len(out)} tensors (from {where or 'the top level'})")
    if dropped:
        print(f"dropped {len(dropped)} training-only tensors, e.g. {dropped[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
