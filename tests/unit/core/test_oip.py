from __future__ import annotations

import numpy as np
import pytest

from modelwire.core.oip import classification_elements, parse_version
from modelwire.errors import InvalidInput


def test_classification_ranks_each_row() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
    labels = ["cat", "dog", "eel"]
    assert classification_elements(probabilities, labels, 2) == [
        b"0.700000:1:dog",
        b"0.200000:2:eel",
        b"0.500000:0:cat",
        b"0.300000:2:eel",
    ]
    assert len(classification_elements(probabilities, labels, 10)) == 6  # capped at 3 each
    with pytest.raises(InvalidInput):
        classification_elements(probabilities, labels, 0)


@pytest.mark.parametrize(("text", "version"), [("", None), ("1", 1), ("12", 12)])
def test_versions(text: str, version: int | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["0", "-1", "v1", "1.0", " 1"])
def test_bad_versions(text: str) -> None:
    with pytest.raises(InvalidInput, match="positive number"):
        parse_version(text)


def test_classification_ranks_unsigned_and_int8_scores_by_value() -> None:
    assert classification_elements(np.array([[0, 5, 10]], np.uint8), (), 3) == [
        b"10.000000:2",
        b"5.000000:1",
        b"0.000000:0",
    ]
    assert classification_elements(np.array([[-128, 3]], np.int8), ("a", "b"), 1) == [
        b"3.000000:1:b"
    ]
