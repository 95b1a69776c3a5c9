"""The numpy resize against Pillow's, which it stands in for on small grayscale stacks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import modelwire.core.images as images_module
from modelwire.core.images import _RESAMPLE, Preprocessing, decode, preprocess_batch
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder
from modelwire.core.resampling import FILTERS, resize_stack, weights
from tests.images import digit_photo, digit_picture, encode, heldout_digits


@pytest.mark.parametrize("resample", sorted(FILTERS))
def test_a_square_resizes_as_pillow_resizes_it(resample: str) -> None:
    rng = np.random.default_rng(7)
    for side in range(1, 129):  # crop_to_content's squares, to digits' 8x8 and more
        for out_w, out_h in ((8, 8), (28, 28), (5, 13), (40, 200)):
            pixels = _picture(rng, side, side)
            assert np.array_equal(
                resize_stack(pixels[None].astype(np.float32), out_w, out_h, resample)[0],
                _pillow(pixels, out_w, out_h, resample),
            ), (resample, side, (out_w, out_h))


@pytest.mark.parametrize("resample", sorted(FILTERS))
def test_other_shapes_stay_within_a_grey_level_of_pillow(resample: str) -> None:
    rng = np.random.default_rng(8)
    differing = total = 0
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 140, 2))
        out_w, out_h = (int(v) for v in rng.integers(1, 60, 2))
        pixels = _picture(rng, height, width)
        want = _pillow(pixels, out_w, out_h, resample)
        got = resize_stack(pixels[None].astype(np.float32), out_w, out_h, resample)[0]
        assert got.shape == (out_h, out_w)
        assert np.abs(got - want).max() <= 1.0, (resample, pixels.shape, (out_h, out_w))
        differing += int((got != want).sum())
        total += got.size
    # Off by one only here and there, not everywhere.
    assert differing / total < 0.1


def _picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    if rng.random() < 0.5:  # ink-like: mostly flat with hard edges
        pixels = np.where(pixels > 200, 255, 0).astype(np.uint8)
    return pixels


def _pillow(pixels: np.ndarray, width: int, height: int, resample: str) -> np.ndarray:
    resized = Image.fromarray(pixels, "L").resize((width, height), _RESAMPLE[resample])
    return np.asarray(resized, dtype=np.float32)


def test_weights_are_pillows_fixed_point_and_a_stack_resizes_each_picture_alike() -> None:
    for in_size, out_size in ((28, 8), (8, 28), (13, 13), (1, 5), (100, 1)):
        sums = weights(in_size, out_size, "box").sum(axis=1)
        assert np.all(np.abs(sums - (1 << 22)) <= in_size)  # each weight rounded once
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 256, (3, 20, 17)).astype(np.float32)
    together = resize_stack(stack, 8, 8, "bilinear")
    assert together.dtype == np.float32
    for picture, resized in zip(stack, together, strict=True):
        assert np.array_equal(resize_stack(picture[None], 8, 8, "bilinear")[0], resized)


def test_the_digits_clean_up_stays_within_a_grey_level_of_pillows_resize(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images, _ = heldout_digits()
    pictures = [digit_picture(images[i], dark_on_light=i % 2 == 0) for i in range(12)]
    pictures += [digit_photo(images[12]), digit_picture(images[13], margin=40)]
    decoded = [decode(encode(picture, "PNG")) for picture in pictures]
    spec = read_model_folder(DEFAULT_MODEL_DIR).config.input.preprocessing()  # type: ignore[union-attr]
    with_numpy = preprocess_batch(decoded, spec)
    monkeypatch.setattr(images_module, "FILTERS", {})  # every resize through Pillow
    resized = []
    pillow_resize = images_module._resize

    def counted(image: Image.Image, spec: Preprocessing) -> Image.Image:
        resized.append(image.size)
        return pillow_resize(image, spec)

    monkeypatch.setattr(images_module, "_resize", counted)
    with_pillow = preprocess_batch(decoded, spec)
    assert len(resized) == len(decoded)
    assert np.array_equal(with_numpy, with_pillow)  # the crops are squares
