"""The detection and OCR steps that need no model: suppression, corner order, request
checks, greedy CTC decoding, reading order and the model.toml tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelwire.core.repository import read_model_folder
from modelwire.core.tasks.object_detection import _clockwise, _suppressed, check_request
from modelwire.core.tasks.ocr import OcrTask
from modelwire.errors import InvalidInput, NotReady


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_suppression_keeps_the_best_of_overlapping_boxes_in_their_order() -> None:
    found = [
        (_box(0, 0, 10, 10), 0.6),
        (_box(1, 1, 11, 11), 0.9),  # overlaps the first: it wins
        (_box(50, 50, 60, 60), 0.7),
    ]
    kept = _suppressed(found, 0.5)
    assert [score for _, score in kept] == [0.9, 0.7]
    assert len(_suppressed(found, 0.99)) == 3


def test_corners_are_put_clockwise_from_the_top_left() -> None:
    shuffled = np.array([[10, 5], [0, 0], [0, 5], [10, 0]], np.float32)
    assert _clockwise(shuffled).tolist() == [[0, 0], [10, 0], [10, 5], [0, 5]]


def test_request_limits() -> None:
    check_request(0.5, 10)
    for threshold, most in [(-0.1, 1), (1.1, 1), (float("nan"), 1), (0.5, 0), (0.5, 10_001)]:
        with pytest.raises(InvalidInput):
            check_request(threshold, most)


def _ocr_folder(tmp_path: Path, characters: str, **table: object) -> Path:
    folder = tmp_path / "reader"
    folder.mkdir()
    options = "".join(f'{key} = "{value}"\n' for key, value in table.items())
    (folder / "model.toml").write_text(
        f'task = "ocr"\n[ocr]\ndetector = "d"\nrecognizer = "r"\n{options}'
    )
    (folder / "characters.txt").write_text(characters, encoding="utf-8")
    return folder


def test_greedy_ctc_decoding_merges_repeats_and_drops_blanks(tmp_path: Path) -> None:
    task = OcrTask(read_model_folder(_ocr_folder(tmp_path, "a\nb\n")).source(1))
    assert task.characters == ["", "a", "b", " "]
    # Columns: a a blank a b space b  → "aab b"
    best = [1, 1, 0, 1, 2, 3, 2]
    distributions = np.full((1, len(best), 4), 0.1, np.float32)
    for column, index in enumerate(best):
        distributions[0, column, index] = 0.7
    ((text, confidence),) = task.decode(distributions)
    assert text == "aab b"
    assert confidence == pytest.approx(0.7)
    with pytest.raises(NotReady, match="gives 5 classes"):
        task.decode(np.zeros((1, 3, 5), np.float32))


def test_reading_order_is_rows_then_left_to_right(tmp_path: Path) -> None:
    task = OcrTask(read_model_folder(_ocr_folder(tmp_path, "a\n")).source(1))
    right, left, below = _box(100, 3, 150, 20), _box(0, 0, 50, 20), _box(0, 40, 50, 60)
    ordered = task.reading_order([(below, 0.9), (right, 0.8), (left, 0.7)])
    assert [box[0].tolist() for box, _ in ordered] == [[0, 0], [100, 3], [0, 40]]


def test_ocr_folders_that_cannot_load_say_why(tmp_path: Path) -> None:
    empty = _ocr_folder(tmp_path, "")
    with pytest.raises(InvalidInput, match="has no characters"):
        OcrTask(read_model_folder(empty).source(1))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.toml").write_text(
        'task = "ocr"\n[ocr]\ndetector = "d"\nrecognizer = "r"\n'
        'characters_file = "../reader/characters.txt"\n'
    )
    with pytest.raises(InvalidInput, match="must be in the folder"):
        OcrTask(read_model_folder(outside).source(1))
    for text, reason in [
        ('task = "ocr"\n', "needs an \\[ocr\\] table"),
        ('task = "object-detection"\n', "needs a \\[detection\\] table"),
    ]:
        folder = tmp_path / "bad"
        folder.mkdir(exist_ok=True)
        (folder / "model.toml").write_text(text)
        with pytest.raises(InvalidInput, match=reason):
            read_model_folder(folder)
