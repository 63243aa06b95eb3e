#!/usr/bin/env python3
"""Writes tests/fixtures/image_preprocess.safetensors: what Pillow does to a few images,
for tests/image_preprocess.rs.

Per case `k` (uint8 tensors unless noted):
  case{k}.file        the input file's bytes (PNG or JPEG), as the test reads them
  case{k}.rgb         PIL's Image.open(file).convert("RGB"), [H, W, 3] (left out for
                      the large crop inputs, whose lossless PNG is the same pixels)
  case{k}.crop        the reference's center_crop_arr(rgb, size), [size, size, 3]
                      (only for crop cases; size in metadata), with Pillow <= 12's
                      pass order (see classic_resize)
  case{k}.box / .bicubic  resize of rgb to the (w, h) in metadata, [h, w, 3], classic
                      pass order
The script prints how far this Pillow's own two-axis Image.resize is from the classic
order (Pillow 13 runs the vertical pass first for some shapes).
Metadata `cases` (JSON) lists each case: name, kind, size or target.

Inputs are patterns that compress well (the fixture stays small) but have sharp edges
(so the bicubic overshoot is clipped) and smooth ramps. Run with the shared venv:
  /work/venv/bin/python scripts/make_image_fixture.py tests/fixtures/image_preprocess.safetensors
"""

import io
import json
import sys

import numpy as np
import PIL
from PIL import Image
from safetensors.numpy import save_file


def classic_resize(img, size, resample):
    """Pillow <= 12's two-axis resize: a horizontal pass, then a vertical pass, each
    rounded to 8 bits. Two single-axis `resize` calls of any Pillow are exactly those
    passes; Pillow 13's own two-axis `resize` may run the vertical pass first (the
    reference ran on Pillow <= 12)."""
    w, h = size
    if img.size[0] != w:
        img = img.resize((w, img.size[1]), resample=resample)
    if img.size[1] != h:
        img = img.resize((w, h), resample=resample)
    return img


def center_crop_arr(pil_image, image_size, resize=classic_resize):
    """The reference's (autoencs/utils.py, from guided-diffusion ADM), with the resize
    call as a parameter: `classic_resize` or Pillow's own `Image.resize`."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = resize(pil_image, tuple(x // 2 for x in pil_image.size), Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = resize(
        pil_image, tuple(round(x * scale) for x in pil_image.size), Image.BICUBIC
    )
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return Image.fromarray(
        arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]
    )


def pattern(w, h, seed):
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 5 + y * 3 + seed) % 256
    g = np.where(((x // 4) + (y // 3)) % 2 == 0, 230, 20)
    b = (255 * (0.5 + 0.5 * np.sin(x / 5.0 + y / 7.0 + seed))).astype(np.int64)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def report(name, classic, own):
    d = np.abs(classic.astype(int) - own.astype(int))
    if d.any():
        print(f"{name}: this Pillow's Image.resize differs from the classic pass order on "
              f"{(d > 0).sum()} of {d.size} bytes, by at most {d.max()}")


def png_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def main(out):
    tensors, cases = {}, []

    def add(name, file_bytes, kind, **extra):
        img = Image.open(io.BytesIO(file_bytes)).convert("RGB")
        tensors[f"{name}.file"] = np.frombuffer(file_bytes, dtype=np.uint8).copy()
        if img.width * img.height <= 4096 or kind != "crop":
            tensors[f"{name}.rgb"] = np.array(img)  # large crop inputs: the PNG is lossless
        entry = {"name": name, "kind": kind, **extra}
        if kind == "crop":
            tensors[f"{name}.crop"] = np.array(center_crop_arr(img, extra["size"]))
            own = lambda im, size, f: im.resize(size, resample=f)
            report(name, tensors[f"{name}.crop"], np.array(center_crop_arr(img, extra["size"], own)))
        elif kind == "resize":
            w, h = extra["target"]
            for f, key in [(Image.BOX, "box"), (Image.BICUBIC, "bicubic")]:
                tensors[f"{name}.{key}"] = np.array(classic_resize(img, (w, h), f))
                report(f"{name} {key}", tensors[f"{name}.{key}"], np.array(img.resize((w, h), resample=f)))
        cases.append(entry)

    rgb = lambda w, h, s: Image.fromarray(pattern(w, h, s))
    # center_crop_arr: bicubic shrink only; two BOX halvings then bicubic; enlarge a 7×7;
    # wide image; round(4.5) = 4 (Python rounds half to even); portrait, odd sizes.
    add("wide_shrink", png_bytes(rgb(300, 200, 1)), "crop", size=64)
    add("two_box", png_bytes(rgb(530, 270, 2)), "crop", size=64)
    add("tiny7", png_bytes(rgb(7, 7, 3)), "crop", size=32)
    add("half_even", png_bytes(rgb(6, 4, 4)), "crop", size=3)
    add("portrait_odd", png_bytes(rgb(41, 97, 5)), "crop", size=17)
    # Plain resizes: shrink by non-integer factors, enlarge, one axis only.
    add("resize_shrink", png_bytes(rgb(37, 23, 6)), "resize", target=[12, 9])
    add("resize_grow", png_bytes(rgb(9, 5, 7)), "resize", target=[20, 13])
    add("resize_one_axis", png_bytes(rgb(31, 8, 8)), "resize", target=[10, 8])
    add("resize_tall_shrink", png_bytes(rgb(19, 57, 12)), "resize", target=[15, 48])
    # Decoding: grayscale, grayscale+alpha, RGBA, palette, 16-bit RGB → RGB.
    base = pattern(24, 16, 9)
    gray = Image.fromarray(base[:, :, 0])
    add("gray", png_bytes(gray), "crop", size=16)
    add("gray_alpha", png_bytes(Image.merge("LA", [gray, Image.fromarray(base[:, :, 1])])), "decode")
    add("rgba", png_bytes(Image.fromarray(np.dstack([base, base[:, :, :1]]))), "crop", size=8)
    add("palette", png_bytes(Image.fromarray(base).convert("P", palette=Image.ADAPTIVE, colors=16)), "decode")
    rgb16 = (base.astype(np.uint16) * 257 + np.arange(24, dtype=np.uint16)[None, :, None])
    # PIL writes 16-bit RGB PNGs only through raw encoders; build it with the png spec.
    add("rgb16", png16(rgb16), "decode")
    # JPEG (baseline 4:2:0 and progressive 4:4:4): decoders differ, compared with a tolerance.
    jpg = io.BytesIO()
    rgb(64, 48, 10).save(jpg, format="JPEG", quality=90)
    add("jpeg420", jpg.getvalue(), "jpeg")
    jpg = io.BytesIO()
    rgb(40, 40, 11).save(jpg, format="JPEG", quality=95, subsampling=0, progressive=True)
    add("jpeg444_progressive", jpg.getvalue(), "jpeg")

    meta = {"cases": json.dumps(cases), "pillow": PIL.__version__, "numpy": np.__version__}
    save_file(tensors, out, metadata=meta)
    print(f"wrote {out}: {len(cases)} cases, {sum(t.nbytes for t in tensors.values())} bytes of tensors")


def png16(arr):
    """A 16-bit RGB PNG of `arr` [H, W, 3] uint16, written with zlib (no PIL mode for it)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/image_preprocess.safetensors")
