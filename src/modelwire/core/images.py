"""Encoded image bytes → validated pixels → the tensor a model takes.

Decoding is the first thing untrusted bytes meet, so it is strict: only the formats
listed in FORMATS are tried (never EPS, which would run Ghostscript), the pixel count is
checked from the header before any pixel is decoded, and every failure becomes
InvalidInput with a short reason.

Memory stays near 4 bytes per pixel of the budget, per image: `reduce` shrinks each decoded
image to what preprocessing needs before anything else is done with it (the caller
drops the full-size picture then), and a WebP image counts three times its pixels,
since its decoder holds two more full-size canvases while it decodes.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelwire.core.resampling import FILTERS, resize_stack
from modelwire.errors import InvalidInput, TooLarge

__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "MIN_SIDE",
    "DecodeLimits",
    "Preprocessing",
    "decode",
    "preprocess",
    "preprocess_batch",
    "reduce",
    "tensor_batch",
]

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
MIN_SIDE = 8
# Numpy temporaries past glibc's mmap threshold (128 KB) are fresh pages every time, and
# their page faults cost more than the work: a [8, 128, 128] float32 stack took 18x one
# [1, 128, 128]. Chunks of at most this many pixels (64 KB of float32) stay below it.
_CHUNK_PIXELS = 16_384
_WORK_FACTOR = 16
_FORMAT_NAMES = "JPEG, PNG, BMP, GIF or WebP"
#: Pixels a WebP image counts per pixel: libwebp's animation decoder (the only one Pillow
#: uses) keeps a canvas and a copy of the frame beside the decoded image.
_WEBP_WEIGHT = 3
_HIGH_BIT = ("I;16", "I;16B", "I;16L", "I", "F")
#: Pixels of a high-bit-depth image scaled to 8 bits at a time.
_STRIP_PIXELS = 1 << 18


@dataclass(frozen=True)
class DecodeLimits:
    """What decode() accepts: a pixel budget, checked before decoding."""

    max_pixels: int = 40_000_000


DEFAULT_LIMITS = DecodeLimits()


class Preprocessing(BaseModel):
    """How pixels become a model input: model.toml's [input] table (which adds the
    input's name, `repository.InputConfig`) and the preprocessing of training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(ge=1, le=8192)
    height: int = Field(ge=1, le=8192)
    channels: Literal[1, 3] = 3
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color_order: Literal["RGB", "BGR"] = "RGB"
    resample: Literal["nearest", "box", "bilinear", "bicubic", "lanczos"] = "bilinear"
    resize: Literal["stretch", "shorter-side"] = Field(
        "stretch",
        description="stretch: straight to width x height; shorter-side: scale the shorter "
        "side to resize_shorter_to (default: the larger of width and height), then crop "
        "width x height from the centre (torchvision's recipe)",
    )
    resize_shorter_to: int | None = Field(None, ge=1, le=16384)
    polarity: Literal["as-is", "light-on-dark"] = Field(
        "as-is",
        description="light-on-dark: invert grayscale images whose border is brighter than "
        "their centre, so dark ink on light paper looks like light-on-dark training data",
    )
    autocontrast: bool = False
    crop_to_content: bool = False
    scale: float = Field(1.0 / 255.0, gt=0)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @model_validator(mode="after")
    def _per_channel(self) -> Self:
        for field in ("mean", "std"):
            values = getattr(self, field)
            if len(values) not in (1, self.channels):
                raise ValueError(f"{field} needs 1 or {self.channels} values, got {len(values)}")
        if any(value == 0 for value in self.std):
            raise ValueError("std values must not be 0")
        shorter = self.resize_shorter_to
        if shorter is not None and shorter < max(self.width, self.height):
            raise ValueError(
                f"resize_shorter_to ({shorter}) must be at least max(width, height) "
                f"({max(self.width, self.height)})"
            )
        return self


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
        raise _invalid("image data is empty: send the bytes of a " + _FORMAT_NAMES + " file")
    # Pillow creates a WebP decoder, canvas and all, while it opens the file: check the
    # canvas the header declares first.
    if (size := _webp_canvas(data)) is not None:
        _check_pixels(*size, "WEBP", limits)
    try:
        with warnings.catch_warnings():
            # The pixel budget below is the authority; Pillow's own bomb warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise _invalid(f"data is not a {_FORMAT_NAMES} image") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses sizes far past its own limit while reading the header.
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(declared.group(1)):,}" if declared else "too many"
        raise _too_many_pixels(f"{count} pixels", limits) from None
    except Exception as exc:  # any parser failure means bad input
        raise _invalid(f"image is truncated or corrupt ({_reason(exc)})") from None
    width, height = image.size
    _check_pixels(width, height, image.format, limits)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise _invalid(
            f"image is {width}x{height} pixels; the smallest accepted is {MIN_SIDE}x{MIN_SIDE}"
        )
    try:
        image.seek(0)
        image.load()
    except Exception as exc:  # truncated or corrupt pixel data
        raise _invalid(f"{image.format} image is truncated or corrupt ({_reason(exc)})") from None
    return image


def _check_pixels(width: int, height: int, fmt: str | None, limits: DecodeLimits) -> None:
    weight = _WEBP_WEIGHT if fmt == "WEBP" else 1
    if width * height * weight > limits.max_pixels:
        declared = f"{width}x{height} pixels"
        if weight > 1:
            declared += f" (a WebP image counts {weight} per pixel: its decoder keeps copies)"
        raise _too_many_pixels(declared, limits)


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP header declares (RIFF....WEBP, then a VP8X, VP8L or VP8
    chunk), or None for other data or a header too short to say."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas width and height, minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit width and height - 1
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Turn a decoded image into one model input of shape CHW or HWC, float32."""
    tensor: np.ndarray = preprocess_batch([image], spec)[0]
    return tensor


def preprocess_batch(images: Sequence[Image.Image], spec: Preprocessing) -> np.ndarray:
    """Turn decoded images into one batch of model inputs, [N, C, H, W] or [N, H, W, C],
    float32: `reduce` each, then `tensor_batch`."""
    return tensor_batch([reduce(image, spec) for image in images], spec)


def reduce(image: Image.Image, spec: Preprocessing) -> Image.Image:
    """A decoded image as small as preprocessing allows, in the model's mode (L or RGB):
    resized to the input size, or, where the grayscale clean-up needs more, to a few
    pixels per input pixel. A caller that drops `image` right after keeps only the small
    one. Pictures without transparency are converted first, as `preprocess` always did
    (the same pixels); transparent ones are shrunk first and laid on white paper after,
    so no full-size composite is made."""
    mode = "L" if spec.channels == 1 else "RGB"
    if image.mode in _HIGH_BIT:
        image = _grey8(image)
    if _transparent(image):
        image = image if image.mode in ("LA", "RGBA") else image.convert("RGBA")
    elif image.mode != mode:
        image = image.convert(mode)
    small = _shrink(image, _work_side(spec)) if _cleans(spec) else _resize(image, spec)
    return _to_mode(small, mode)


def tensor_batch(reduced: Sequence[Image.Image], spec: Preprocessing) -> np.ndarray:
    """Images from `reduce` as one batch of model inputs. Pictures of the same size
    share every numpy step, so a batch costs much less than its images one at a time."""
    if _cleans(spec):
        pixels = _clean_paper(list(reduced), spec)
    else:
        pixels = np.stack([np.asarray(image, dtype=np.float32) for image in reduced])
    if pixels.ndim == 3:
        pixels = pixels[..., None]
    if spec.color_order == "BGR" and spec.channels == 3:
        pixels = pixels[..., ::-1]
    # (pixel * scale - mean) / std as one multiply and one add, in place.
    std = np.asarray(spec.std, np.float32)
    pixels = np.multiply(pixels, np.float32(spec.scale) / std, dtype=np.float32)
    pixels -= np.asarray(spec.mean, np.float32) / std
    if spec.layout == "NCHW":
        pixels = pixels.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(pixels)


def _cleans(spec: Preprocessing) -> bool:
    return spec.channels == 1 and (
        spec.polarity != "as-is" or spec.autocontrast or spec.crop_to_content
    )


def _work_side(spec: Preprocessing) -> int:
    return _WORK_FACTOR * max(spec.width, spec.height)


def _transparent(image: Image.Image) -> bool:
    if image.mode == "P":
        return "transparency" in image.info
    if image.mode == "PA":
        return True
    if image.mode in ("LA", "RGBA"):
        return image.getextrema()[-1] != (255, 255)
    return False


def _grey8(image: Image.Image) -> Image.Image:
    """A high-bit-depth image as 8-bit grey, its real range mapped to 0..255 (Pillow's
    conversion would clip it), a strip of rows at a time so the float copy stays small."""
    extrema = image.getextrema()
    top = float(extrema[1]) if isinstance(extrema[1], int | float) else 0.0
    top = top or 1.0
    grey = Image.new("L", image.size)
    rows = max(1, _STRIP_PIXELS // image.width)
    for first in range(0, image.height, rows):
        box = (0, first, image.width, min(image.height, first + rows))
        values = np.asarray(image.crop(box), dtype=np.float64)
        strip = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        grey.paste(Image.fromarray(strip, "L"), box[:2])
    return grey


def _clean_paper(images: list[Image.Image], spec: Preprocessing) -> np.ndarray:
    """The grayscale steps that make pictures of ink on paper look like the training
    data: light ink on black, background flat, the ink cropped to a centred square;
    then resized to the model's input. [N, height, width] grey levels, float32.

    They look at the whole picture, so they run on copies a few pixels per output pixel
    wide (far cheaper than a photo's full resolution), in numpy, on pictures of one size
    together, a chunk of at most _CHUNK_PIXELS at a time; pictures this small are
    resized in numpy too (`resampling`), which costs far less than a Pillow image each.
    """
    shrunk = [_shrink(image, _work_side(spec)) for image in images]
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(shrunk):
        groups.setdefault(image.size, []).append(index)
    chunks: list[list[int]] = []
    for (width, height), members in groups.items():
        size = max(1, _CHUNK_PIXELS // (width * height))
        chunks.extend(members[start : start + size] for start in range(0, len(members), size))
    cleaned = np.empty((len(images), spec.height, spec.width), dtype=np.float32)
    for indices in chunks:
        stack = _grey_stack([shrunk[i] for i in indices])
        if spec.polarity == "light-on-dark":
            dark_ink = _border(stack).mean(axis=1) > stack.mean(axis=(1, 2))
            stack[dark_ink] = 255.0 - stack[dark_ink]
        if spec.autocontrast:
            stack = _flatten_background(stack)
        if spec.crop_to_content:  # the ink, found before the levels are rounded
            ink: np.ndarray = stack > 64
            ink_rows, ink_cols = np.any(ink, axis=2), np.any(ink, axis=1)
        # As an 8-bit picture holds them: clipped, and truncated to whole levels.
        np.clip(stack, 0, 255, out=stack)
        np.trunc(stack, out=stack)
        if not spec.crop_to_content:
            cleaned[indices] = _resize_levels(stack, spec)
            continue
        squares = [
            _crop_to_content(stack[position], ink_rows[position], ink_cols[position])
            for position in range(len(indices))
        ]
        if len(squares) == 1:
            cleaned[indices[0]] = _resize_levels(squares[0][None], spec)[0]
            continue
        sides: dict[tuple[int, ...], list[int]] = {}  # squares of one side resize together
        for position, square in enumerate(squares):
            sides.setdefault(square.shape, []).append(position)
        for same_side in sides.values():
            resized = _resize_levels(np.stack([squares[p] for p in same_side]), spec)
            cleaned[[indices[p] for p in same_side]] = resized
    return cleaned


def _grey_stack(images: list[Image.Image]) -> np.ndarray:
    """[N, H, W] float32 grey levels of pictures of one size. 8-bit grey ones are read
    as their bytes, joined, and converted at once: `np.asarray` on each costs more than
    these small pictures' arithmetic, and pasting them onto one sheet lets go of the
    GIL once per picture, a hand-over to the event loop each under load."""
    width, height = images[0].size
    if len(images) == 1 or any(image.mode != "L" for image in images):
        return np.stack([np.asarray(image, dtype=np.float32) for image in images])
    joined = np.frombuffer(b"".join([image.tobytes() for image in images]), np.uint8)
    return joined.reshape(len(images), height, width).astype(np.float32)


def _resize_levels(stack: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """[N, H, W] grey levels at the model's input size."""
    if spec.resize == "stretch" and spec.resample in FILTERS:
        return resize_stack(stack, spec.width, spec.height, spec.resample)
    return np.stack(
        [
            np.asarray(_resize(Image.fromarray(pixels.astype(np.uint8), "L"), spec), np.float32)
            for pixels in stack
        ]
    )


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, field="image")


def _resize(image: Image.Image, spec: Preprocessing) -> Image.Image:
    resample = _RESAMPLE[spec.resample]
    if spec.resize == "stretch":
        return image.resize((spec.width, spec.height), resample)
    shorter = spec.resize_shorter_to or max(spec.width, spec.height)
    scale = shorter / min(image.size)
    size = (
        max(spec.width, round(image.width * scale)),
        max(spec.height, round(image.height * scale)),
    )
    scaled = image.resize(size, resample)
    left = (scaled.width - spec.width) // 2
    top = (scaled.height - spec.height) // 2
    return scaled.crop((left, top, left + spec.width, top + spec.height))


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode == "P" or "A" in image.mode:
        # Transparent areas become white paper, as a browser would show them.
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return image if image.mode == mode else image.convert(mode)


def _border(stack: np.ndarray) -> np.ndarray:
    """The border pixels of each image of a [N, H, W] stack: [N, 2W + 2H]."""
    return np.concatenate(
        [stack[:, 0, :], stack[:, -1, :], stack[:, :, 0], stack[:, :, -1]], axis=1
    )


def _shrink(image: Image.Image, side: int) -> Image.Image:
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def _flatten_background(stack: np.ndarray) -> np.ndarray:
    """Subtract the background and stretch the ink to 0..255, so grey paper and a lighting
    gradient in a photo become the clean black background of the training data.

    The background of each image of the [N, H, W] stack is the plane a + b·x + c·y fitted
    to its border pixels (the paper around the digit): cheap, and right for the even or
    linearly falling light of a photo.
    """
    count, height, width = stack.shape
    xs, ys, fit = _plane_fit(height, width)
    coef = _border(stack) @ fit.T  # [N, 3]
    background = (coef[:, 0, None, None] + coef[:, 1, None, None] * xs[None, None, :]) + coef[
        :, 2, None, None
    ] * ys[None, :, None]
    ink = stack - background
    # The brightest ink, ignoring the top 0.5 % (noise): partition is far cheaper than sort.
    flat = ink.reshape(count, -1)
    rank = min(flat.shape[1] - 1, int(flat.shape[1] * 0.995))
    top = np.maximum(np.partition(flat, rank, axis=1)[:, rank], 1.0)
    return np.asarray(np.clip(ink * (255.0 / top)[:, None, None], 0, 255), dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _plane_fit(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates, and the least-squares solver (pseudo-inverse) of a plane through
    the border pixels of a height x width image, in _border's order."""
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    border_x = np.concatenate([xs, xs, np.zeros(height), np.full(height, width - 1)])
    border_y = np.concatenate([np.zeros(width), np.full(width, height - 1), ys, ys])
    design = np.stack([np.ones_like(border_x), border_x, border_y], axis=1)
    return xs, ys, np.linalg.pinv(design).astype(np.float32)


def _crop_to_content(pixels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Crop to the bounding box of the ink (`rows` and `cols`: whether each row and
    column holds any) and pad it to a centred square."""
    rows, cols = np.flatnonzero(rows), np.flatnonzero(cols)
    if rows.size == 0:
        return pixels
    content = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = content.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = content
    return square


def _too_many_pixels(declared: str, limits: DecodeLimits) -> TooLarge:
    return TooLarge(
        f"image declares {declared}; the limit is {limits.max_pixels:,} pixels: "
        "send a smaller image",
        field="image",
    )


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
