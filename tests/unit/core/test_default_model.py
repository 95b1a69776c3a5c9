"""The shipped digits model, checked with ONNX Runtime alone (no PyTorch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelwire.core.images import decode, preprocess
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder
from tests.images import digit_photo, digit_picture, encode, heldout_digits
from tests.models import Classifier


@pytest.fixture(scope="module")
def digits() -> Classifier:
    return Classifier(read_model_folder(DEFAULT_MODEL_DIR).source(1))


def test_labels_are_the_digit_characters(digits: Classifier) -> None:
    assert digits.source.labels == tuple("0123456789")
    assert digits.source.config.name == "digits"


def test_heldout_accuracy_matches_the_recorded_metric(digits: Classifier) -> None:
    images, labels = heldout_digits()
    probabilities = digits.run((images / 16.0).astype(np.float32)[:, None])
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    recorded = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())
    assert accuracy >= 0.97
    assert accuracy == pytest.approx(recorded["heldout_accuracy"], abs=1e-4)
    assert len(labels) == recorded["split"]["test_size"]


def test_scores_are_probabilities(digits: Classifier) -> None:
    images, _ = heldout_digits()
    probabilities = digits.run((images[:50] / 16.0).astype(np.float32)[:, None])
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.max(axis=1) > 0).all()
    assert (probabilities.max(axis=1) <= 1).all()


@pytest.mark.parametrize(
    ("dark_on_light", "margin"),
    [(False, 0), (True, 0), (False, 40), (True, 40)],
    ids=["light-on-dark", "dark-on-light", "light-off-centre", "dark-off-centre"],
)
def test_pictures_classify_as_well_in_either_polarity(
    digits: Classifier, dark_on_light: bool, margin: int
) -> None:
    images, labels = heldout_digits()
    batch = np.stack(
        [
            preprocess(
                decode(encode(digit_picture(p, dark_on_light=dark_on_light, margin=margin))),
                digits.preprocessing,
            )
            for p in images
        ]
    )
    accuracy = float((digits.run(batch).argmax(axis=1) == labels).mean())
    assert accuracy >= 0.97


def test_phone_photos_of_dark_ink_on_grey_paper(digits: Classifier) -> None:
    images, labels = heldout_digits()
    batch = np.stack(
        [
            preprocess(decode(encode(digit_photo(p), "JPEG", quality=85)), digits.preprocessing)
            for p in images
        ]
    )
    accuracy = float((digits.run(batch).argmax(axis=1) == labels).mean())
    assert accuracy >= 0.95
