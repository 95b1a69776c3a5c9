from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelwire.core.images import (
    DecodeLimits,
    Preprocessing,
    decode,
    preprocess,
    preprocess_batch,
    reduce,
)
from modelwire.errors import InvalidInput
from tests.images import (
    digit_bytes,
    digit_photo,
    digit_picture,
    encode,
    heldout_digits,
    png_header_claiming,
)

GRAY_8X8 = Preprocessing(width=8, height=8, channels=1, resample="box")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP"])
def test_decodes_every_supported_format(fmt: str) -> None:
    image = decode(digit_bytes(3, fmt))
    assert image.format == fmt
    assert image.size == (64, 64)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16", "CMYK"])
def test_every_mode_becomes_the_same_tensor_shape(mode: str) -> None:
    picture = digit_picture(heldout_digits()[0][0])
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(picture).astype(np.uint16) * 16)
        fmt = "PNG"
    else:
        converted = picture.convert(mode)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
    tensor = preprocess(decode(encode(converted, fmt)), GRAY_8X8)
    assert tensor.shape == (1, 8, 8)
    assert tensor.dtype == np.float32
    # Every mode carries the same picture: the tensors agree closely with the L version.
    reference = preprocess(decode(encode(picture, "PNG")), GRAY_8X8)
    assert np.abs(tensor - reference).mean() < 0.05


def test_sixteen_bit_images_use_their_real_range() -> None:
    picture = digit_picture(heldout_digits()[0][0])
    reference = preprocess(decode(encode(picture, "PNG")), GRAY_8X8)
    full_range = Image.fromarray(np.asarray(picture).astype(np.uint16) * 257)  # 0..65535
    tensor = preprocess(decode(encode(full_range, "PNG")), GRAY_8X8)
    # Pillow's own conversion would clip every value above 255 to white.
    assert np.abs(tensor - reference).max() < 0.02


def test_transparent_background_is_paper() -> None:
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # fully transparent black
    tensor = preprocess(decode(encode(rgba, "PNG")), GRAY_8X8)
    assert np.allclose(tensor, 1.0)


def test_gif_uses_its_first_frame() -> None:
    frames = [Image.new("L", (16, 16), 0), Image.new("L", (16, 16), 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    tensor = preprocess(decode(buffer.getvalue()), GRAY_8X8)
    assert np.allclose(tensor, 0.0)


def test_rgb_layouts_and_normalisation() -> None:
    image = Image.new("RGB", (10, 10), (255, 0, 0))
    spec = Preprocessing(
        width=4,
        height=4,
        channels=3,
        layout="NHWC",
        color_order="BGR",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    tensor = preprocess(decode(encode(image, "PNG")), spec)
    assert tensor.shape == (4, 4, 3)
    assert np.allclose(tensor[0, 0], [-1.0, -1.0, 1.0])


def test_light_on_dark_polarity_inverts_dark_ink() -> None:
    spec = Preprocessing(width=8, height=8, channels=1, polarity="light-on-dark")
    pixels = heldout_digits()[0][0]
    light = preprocess(decode(encode(digit_picture(pixels), "PNG")), spec)
    dark = preprocess(decode(encode(digit_picture(pixels, dark_on_light=True), "PNG")), spec)
    assert np.corrcoef(light.ravel(), dark.ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a JPEG, PNG"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a JPEG, PNG"),
        (digit_bytes(1, "JPEG")[:300], "truncated or corrupt"),
        (digit_bytes(1, "JPEG")[:-200], "truncated or corrupt"),
        (digit_bytes(1, "PNG")[:120], "truncated or corrupt"),
        (encode(Image.new("L", (7, 7)), "PNG"), "smallest accepted is 8x8"),
        (encode(Image.new("L", (100, 7)), "PNG"), "smallest accepted is 8x8"),
        (png_header_claiming(50_000, 50_000), "2,500,000,000 pixels"),
    ],
    ids=[
        "empty",
        "text",
        "eps",
        "truncated-jpeg-header",
        "truncated-jpeg",
        "truncated-png",
        "7x7",
        "100x7",
        "bomb",
    ],
)
def test_bad_bytes_raise_invalid_input_saying_why(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as caught:
        decode(data)
    assert "Traceback" not in caught.value.message
    assert "/" not in caught.value.message.replace("8x8", "")


def test_pixel_budget_is_checked_from_the_header_before_decoding() -> None:
    # 9,000 x 9,000 would need 81 MB as grayscale; the header alone is enough to refuse it.
    with pytest.raises(InvalidInput, match="9000x9000 pixels; the limit is 1,000"):
        decode(png_header_claiming(9_000, 9_000), DecodeLimits(max_pixels=1_000))


def test_pixel_budget_is_configurable() -> None:
    data = encode(Image.new("L", (40, 40)), "PNG")
    assert decode(data, DecodeLimits(max_pixels=1_600)).size == (40, 40)
    with pytest.raises(InvalidInput, match="the limit is 1,599"):
        decode(data, DecodeLimits(max_pixels=1_599))


DIGITS_LIKE = Preprocessing(
    width=8,
    height=8,
    channels=1,
    resample="box",
    polarity="light-on-dark",
    autocontrast=True,
    crop_to_content=True,
)


def test_a_batch_equals_its_images_one_by_one() -> None:
    images, _ = heldout_digits()
    pictures = [
        digit_picture(images[0]),
        digit_picture(images[1], dark_on_light=True),
        digit_photo(images[2]),
        digit_picture(images[3], margin=40),
        digit_picture(images[4], dark_on_light=True),  # same size as the first two
        Image.new("L", (64, 64), 128),  # blank paper: nothing to crop
        digit_picture(images[0]),  # crops to the first one's square: resized with it
        digit_picture(images[1], dark_on_light=True),
    ]
    decoded = [decode(encode(p, "PNG")) for p in pictures]
    for spec in (DIGITS_LIKE, Preprocessing(width=16, height=12, channels=3, layout="NHWC")):
        batch = preprocess_batch(decoded, spec)
        assert batch.shape[0] == len(decoded)
        for row, image in zip(batch, decoded, strict=True):
            assert np.array_equal(row, preprocess(image, spec))


@pytest.mark.parametrize(
    "options",
    [{"quality": 50}, {"lossless": True}, {"save_all": True, "lossless": True}],
    ids=["lossy", "lossless", "animated"],
)
def test_a_webp_counts_three_times_its_pixels(options: dict[str, object]) -> None:
    """Its decoder holds a canvas and a copy of the frame beside the picture; the
    canvas size is read from the header before Pillow creates the decoder."""
    frames = [Image.new("RGB", (200, 100), (0, 0, 0)), Image.new("RGB", (200, 100), "white")]
    if options.get("save_all"):
        options = {**options, "append_images": frames[1:]}
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", **options)
    data = buffer.getvalue()
    assert decode(data, DecodeLimits(max_pixels=60_000)).size == (200, 100)
    with pytest.raises(InvalidInput, match="WebP image counts 3 per pixel"):
        decode(data, DecodeLimits(max_pixels=59_999))
    with pytest.raises(InvalidInput, match="WebP image counts 3 per pixel"):
        decode(data[:40], DecodeLimits(max_pixels=59_999))  # the header alone says so


def test_reduce_keeps_only_what_preprocessing_needs() -> None:
    spec = Preprocessing(width=28, height=28, channels=1, crop_to_content=True)
    big = Image.new("RGBA", (3000, 2000), (10, 20, 30, 128))
    small = reduce(big, spec)
    assert small.mode == "L"
    assert max(small.size) <= 16 * 28
    assert reduce(Image.new("RGB", (3000, 2000)), Preprocessing(width=32, height=16)).size == (
        32,
        16,
    )


def full_size_conversion(image: Image.Image, mode: str) -> Image.Image:
    """What preprocessing has always meant, done on the whole picture: high bit depths
    scaled by their real range, transparency laid on white paper, then the mode."""
    if image.mode in ("I;16", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) or 1.0
        image = Image.fromarray(np.clip(values / top * 255, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or "A" in image.mode:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert(mode)


def picture_in(mode: str) -> Image.Image:
    rng = np.random.default_rng(7)
    grey = Image.fromarray(rng.integers(0, 255, (300, 420), dtype=np.uint8), "L")
    if mode == "I;16":
        return Image.fromarray((np.asarray(grey).astype(np.uint16) * 97).astype(np.uint16))
    if mode in ("I", "F"):
        return grey.convert(mode).point(lambda v: v * 3)
    if mode == "RGBA-transparent":
        image = grey.convert("RGBA")
        image.putalpha(Image.fromarray(rng.integers(0, 255, (300, 420), dtype=np.uint8)))
        return image
    if mode == "P-transparent":
        image = grey.convert("RGB").convert("P")
        image.info["transparency"] = 0
        return image
    return grey.convert("RGB").convert(mode)


SPECS = {
    "digits": Preprocessing(
        width=8, height=8, channels=1, resample="box", polarity="light-on-dark",
        autocontrast=True, crop_to_content=True,
    ),
    "grey": Preprocessing(width=32, height=16, channels=1),
    "photo": Preprocessing(width=64, height=64, resize="shorter-side", resize_shorter_to=72),
}  # fmt: skip


@pytest.mark.parametrize("spec", sorted(SPECS))
@pytest.mark.parametrize(
    ("mode", "tolerance"),
    [
        ("L", 0.0), ("LA", 0.0), ("RGB", 0.0), ("RGBA", 0.0), ("P", 0.0), ("1", 0.0),
        ("CMYK", 0.0), ("I;16", 0.0), ("I", 0.0), ("F", 0.0),
        # Shrunk before compositing: premultiplied resizing rounds a little differently.
        ("RGBA-transparent", 3 / 255), ("P-transparent", 3 / 255),
    ],
)  # fmt: skip
def test_reducing_first_gives_what_full_size_conversion_gives(
    mode: str, tolerance: float, spec: str
) -> None:
    preprocessing = SPECS[spec]
    image = picture_in(mode)
    target = "L" if preprocessing.channels == 1 else "RGB"
    reduced = preprocess_batch([image], preprocessing)
    reference = preprocess_batch([full_size_conversion(image, target)], preprocessing)
    assert np.abs(reduced - reference).max() <= tolerance + 1e-6
