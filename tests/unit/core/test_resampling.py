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
def test_within_one_grey_level_of_pillow(resample: str) -> None:
    rng = np.random.default_rng(7)
    differing = total = 0
    for _ in range(150):
        height, width = (int(v) for v in rng.integers(1, 120, 2))
        out_w, out_h = (int(v) for v in rng.integers(1, 48, 2))
        pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
        if rng.random() < 0.5:  # ink-like: mostly flat with hard edges
            pixels = np.where(pixels > 200, 255, 0).astype(np.uint8)
        pillow = Image.fromarray(pixels, "L").resize((out_w, out_h), _RESAMPLE[resample])
        want = np.asarray(pillow, dtype=np.float32)
        got = resize_stack(pixels[None].astype(np.float32), out_w, out_h, resample)[0]
        assert got.shape == (out_h, out_w)
        assert np.abs(got - want).max() <= 1.0, (resample, pixels.shape, (out_h, out_w))
        differing += int((got != want).sum())
        total += got.size
    # Off by one only where the two roundings fall differently, not everywhere.
    assert differing / total < 0.1


def test_weights_sum_to_one_and_stack_resizes_each_picture_alike() -> None:
    for in_size, out_size in ((28, 8), (8, 28), (13, 13), (1, 5), (100, 1)):
        assert np.allclose(weights(in_size, out_size, "box").sum(axis=1), 1.0, atol=1e-6)
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 256, (3, 20, 17)).astype(np.float32)
    together = resize_stack(stack, 8, 8, "bilinear")
    for picture, resized in zip(stack, together, strict=True):
        assert np.array_equal(resize_stack(picture[None], 8, 8, "bilinear")[0], resized)
    assert together.min() >= 0
    assert together.max() <= 255
    assert np.array_equal(together, np.round(together))


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
    assert np.abs(with_numpy - with_pillow).max() <= spec.scale * 1.001  # one level of 255
