"""Encoded image bytes → validated pixels → the tensor a model takes.

Decoding is the first thing untrusted bytes meet, so it is strict: only the formats
listed in FORMATS are tried (never EPS, which would run Ghostscript), the pixel count is
checked from the header before any pixel is decoded, and every failure becomes
InvalidInput with a short reason.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from modelwire.errors import InvalidInput

__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "MIN_SIDE",
    "DecodeLimits",
    "Preprocessing",
    "decode",
    "preprocess",
]

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
MIN_SIDE = 8
_WORK_SIDE = 256
_FORMAT_NAMES = "JPEG, PNG, BMP, GIF or WebP"


@dataclass(frozen=True)
class DecodeLimits:
    """What decode() accepts: a pixel budget, checked before decoding."""

    max_pixels: int = 40_000_000


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become a model input (see model.toml's [input] table)."""

    width: int
    height: int
    channels: Literal[1, 3] = 3
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color_order: Literal["RGB", "BGR"] = "RGB"
    resample: Literal["nearest", "box", "bilinear", "bicubic", "lanczos"] = "bilinear"
    # "light-on-dark": invert grayscale images whose border is brighter than their
    # centre, so dark ink on light paper looks like the light-on-dark training data.
    polarity: Literal["as-is", "light-on-dark"] = "as-is"
    autocontrast: bool = False
    crop_to_content: bool = False
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def decode(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode the first frame of an encoded image, or raise InvalidInput saying why."""
    if not data:
        raise InvalidInput("image data is empty: send the bytes of a " + _FORMAT_NAMES + " file")
    try:
        with warnings.catch_warnings():
            # The pixel budget below is the authority; Pillow's own bomb warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise InvalidInput(f"data is not a {_FORMAT_NAMES} image") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses sizes far past its own limit while reading the header.
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(declared.group(1)):,}" if declared else "too many"
        raise InvalidInput(_too_many_pixels(f"{count} pixels", limits)) from None
    except Exception as exc:  # any parser failure means bad input
        raise InvalidInput(f"image is truncated or corrupt ({_reason(exc)})") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise InvalidInput(_too_many_pixels(f"{width}x{height} pixels", limits))
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidInput(
            f"image is {width}x{height} pixels; the smallest accepted is {MIN_SIDE}x{MIN_SIDE}"
        )
    try:
        image.seek(0)
        image.load()
    except Exception as exc:  # truncated or corrupt pixel data
        raise InvalidInput(
            f"{image.format} image is truncated or corrupt ({_reason(exc)})"
        ) from None
    return image


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Turn a decoded image into one model input of shape CHW or HWC, float32."""
    image = _to_mode(image, "L" if spec.channels == 1 else "RGB")
    if spec.polarity == "light-on-dark" and _border_is_brighter(image):
        image = ImageOps.invert(image)
    if spec.autocontrast and image.mode == "L":
        image = _flatten_background(image)
    if spec.crop_to_content:
        image = _crop_to_content(image)
    image = image.resize((spec.width, spec.height), _RESAMPLE[spec.resample])
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.color_order == "BGR" and spec.channels == 3:
        pixels = pixels[:, :, ::-1]
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    pixels = (pixels * np.float32(spec.scale) - mean) / std
    if spec.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Pillow clips these to 0..255 when converting; scale the real range instead.
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) or 1.0
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or "A" in image.mode or image.mode == "PA":
        # Transparent areas become white paper, as a browser would show them.
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return image if image.mode == mode else image.convert(mode)


def _border_is_brighter(image: Image.Image) -> bool:
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(border.mean()) > float(pixels.mean())


def _flatten_background(image: Image.Image) -> Image.Image:
    """Subtract the background and stretch the ink to full range, so grey paper and a
    lighting gradient in a photo become the clean black background of the training data.

    The background is the plane a + b·x + c·y fitted to the border pixels (the paper
    around the digit): cheap, and right for the even or linearly falling light of a photo.
    """
    if max(image.size) > _WORK_SIDE:
        image = image.copy()
        image.thumbnail((_WORK_SIDE, _WORK_SIDE), Image.Resampling.BOX)
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape
    ys, xs = np.mgrid[0:height, 0:width]
    edge = np.zeros_like(pixels, dtype=bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    design = np.stack([np.ones(edge.sum()), xs[edge], ys[edge]], axis=1)
    coef, *_ = np.linalg.lstsq(design, pixels[edge], rcond=None)
    background = coef[0] + coef[1] * xs + coef[2] * ys
    ink = pixels - background
    top = max(float(np.percentile(ink, 99.5)), 1.0)
    return Image.fromarray(np.clip(ink / top * 255.0, 0, 255).astype(np.uint8), "L")


def _crop_to_content(image: Image.Image) -> Image.Image:
    """Crop to the bounding box of the ink and pad it to a centred square."""
    mask = image.point(lambda value: 255 if value > 64 else 0)
    box = mask.getbbox()
    if box is None:
        return image
    content = image.crop(box)
    side = max(content.size)
    square = Image.new(image.mode, (side, side), 0)
    square.paste(content, ((side - content.width) // 2, (side - content.height) // 2))
    return square


def _too_many_pixels(declared: str, limits: DecodeLimits) -> str:
    return (
        f"image declares {declared}; the limit is {limits.max_pixels:,} pixels: "
        "send a smaller image"
    )


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
