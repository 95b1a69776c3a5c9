"""Test images made from real data: held-out handwritten digits, in any format and mode."""

from __future__ import annotations

import io
import json
from functools import cache

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from modelwire.core.repository import DEFAULT_MODEL_DIR


@cache
def heldout_digits() -> tuple[np.ndarray, np.ndarray]:
    """The held-out split recorded in the default model's metrics.json: images 0..16, labels."""
    split = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())["split"]
    digits = load_digits()
    order = np.random.default_rng(split["seed"]).permutation(len(digits.target))
    test = order[: split["test_size"]]
    return digits.images[test], digits.target[test]


def digit_picture(
    pixels: np.ndarray,
    *,
    dark_on_light: bool = False,
    size: int = 64,
    margin: int = 0,
) -> Image.Image:
    """A grayscale picture of an 8x8 digit: upscaled, optionally as dark ink on grey paper
    and placed off-centre on a larger sheet."""
    ink = Image.fromarray((pixels * 255 / 16).astype(np.uint8))
    picture = ink.resize((size, size), Image.Resampling.BILINEAR)
    if margin:
        sheet = Image.new("L", (size + 2 * margin, size + 2 * margin), 0)
        sheet.paste(picture, (margin, margin // 2))
        picture = sheet
    if dark_on_light:
        values = np.asarray(picture).astype(np.int32)
        picture = Image.fromarray((210 - values * 160 // 255).astype(np.uint8))
    return picture


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def digit_bytes(label: int, fmt: str = "PNG", *, dark_on_light: bool = False) -> bytes:
    """An encoded picture of the first held-out digit with this label."""
    images, labels = heldout_digits()
    index = int(np.flatnonzero(labels == label)[0])
    picture = digit_picture(images[index], dark_on_light=dark_on_light)
    return encode(picture.convert("RGB") if fmt == "JPEG" else picture, fmt)


def png_header_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG start whose header declares width x height pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def digit_photo(pixels: np.ndarray, *, seed: int = 1) -> Image.Image:
    """A phone-photo-like picture: dark ink on grey paper, off-centre, blurred, noisy,
    with light falling off across the sheet, in colour."""
    from PIL import ImageFilter

    picture = digit_picture(pixels, dark_on_light=True, size=120, margin=20)
    values = np.asarray(picture.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64)
    values = values + np.random.default_rng(seed).normal(0, 6, values.shape)
    values = values * np.linspace(0.8, 1.05, values.shape[1])[None, :]
    tint = np.stack([values, values * 0.97, values * 0.92], axis=-1)
    return Image.fromarray(tint.clip(0, 255).astype(np.uint8), "RGB")


@cache
def noise_picture(side: int = 3000) -> bytes:
    """A photo-sized PNG of noise, whose decoding keeps a batch busy for a while."""
    noise = np.random.default_rng(0).integers(0, 255, (side, side), dtype=np.uint8)
    return encode(Image.fromarray(noise), "PNG")
