"""Reading text in pictures: a pipeline of three served models, with the work between
them done here.

1. The detector (an object-detection model, method db) finds the text lines: rotated
   boxes, put in reading order (top to bottom; left to right within a line's height).
2. Each box is cut out and straightened (a perspective warp); a cut-out much taller
   than wide is turned a quarter, as vertical text is.
3. The classifier, when there is one, tells upright lines from upside-down ones (labels
   0 and 180); those above `rotate_threshold` are turned half a turn.
4. The recogniser reads each line: height `line_height`, width by the line's aspect
   ratio (at least `line_width`), lines of similar shape batched together; its output,
   a distribution over the characters (0 is CTC's blank) per column, is decoded
   greedily: the best character per column, repeats merged, blanks dropped. The line's
   confidence is the mean probability of its characters; lines under `text_threshold`
   are dropped.

At most `max_lines` lines are read per picture (the boxes the detector is surest of),
so a picture of thousands of tiny glyphs costs bounded work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelwire.core.repository import ModelSource, OcrConfig
from modelwire.core.tasks import Encoded, Item
from modelwire.core.tasks.object_detection import library
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput, NotReady

__all__ = ["OcrTask", "TextLine"]


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    #: Four corners (x, y) in the picture's pixels: top-left, top-right, bottom-right,
    #: bottom-left.
    box: tuple[tuple[float, float], ...]


class OcrTask:
    name = "ocr"

    def __init__(self, source: ModelSource) -> None:
        config = source.config.ocr
        assert config is not None  # the schema asks for it
        self.config: OcrConfig = config
        self.model = source.name
        self.characters = _characters(source, config)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return ()

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return ()

    def encode(self, items: Sequence[Item]) -> Encoded:
        raise InvalidInput(
            f"model {self.model!r} reads text in pictures: call ReadText", field="model"
        )

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        return outputs

    def reading_order(
        self, found: list[tuple[np.ndarray, float]]
    ) -> list[tuple[np.ndarray, float]]:
        """The `max_lines` best boxes, top to bottom, and left to right among boxes whose
        tops lie within 10 pixels of each other."""
        best = sorted(found, key=lambda f: -f[1])[: self.config.max_lines]
        ordered = sorted(best, key=lambda f: (f[0][0][1], f[0][0][0]))
        for i in range(len(ordered) - 1):  # one pass of neighbour swaps, as PP-OCR does
            for j in range(i, -1, -1):
                upper, lower = ordered[j][0], ordered[j + 1][0]
                if abs(lower[0][1] - upper[0][1]) < 10 and lower[0][0] < upper[0][0]:
                    ordered[j], ordered[j + 1] = ordered[j + 1], ordered[j]
                else:
                    break
        return ordered

    def crops(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each box cut out of `image` and straightened."""
        cv2 = library("cv2")
        cut = []
        for box in boxes:
            width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
            height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
            target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
            warp = cv2.getPerspectiveTransform(box.astype(np.float32), target)
            crop = cv2.warpPerspective(
                image, warp, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
            )
            if crop.shape[0] / crop.shape[1] >= 1.5:
                crop = np.rot90(crop)
            cut.append(crop)
        return cut

    def classifier_batches(self, crops: Sequence[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        height, width = self.config.classifier_size
        return [
            (group, np.stack([_line_tensor(crops[i], height, width) for i in group]))
            for group in self._groups(crops)
        ]

    def turn_upside_down_lines(
        self, crops: list[np.ndarray], group: list[int], scores: np.ndarray
    ) -> None:
        """Turn the lines the classifier calls 180 degrees with enough confidence."""
        for index, row in zip(group, np.asarray(scores), strict=True):
            label = int(np.argmax(row))
            if label == 1 and float(row[label]) > self.config.rotate_threshold:
                crops[index] = np.ascontiguousarray(np.rot90(crops[index], 2))

    def recognizer_batches(self, crops: Sequence[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        config = self.config
        batches = []
        for group in self._groups(crops):
            widest = max(
                config.line_width / config.line_height,
                *(crops[i].shape[1] / crops[i].shape[0] for i in group),
            )
            width = int(config.line_height * widest)
            batches.append(
                (
                    group,
                    np.stack([_line_tensor(crops[i], config.line_height, width) for i in group]),
                )
            )
        return batches

    def _groups(self, crops: Sequence[np.ndarray]) -> list[list[int]]:
        """Lines in order of aspect ratio, `batch_size` at a time."""
        ratios = np.array([c.shape[1] / float(c.shape[0]) for c in crops])
        order = [int(i) for i in np.argsort(ratios)]
        size = self.config.batch_size
        return [order[start : start + size] for start in range(0, len(order), size)]

    def decode(self, distributions: np.ndarray) -> list[tuple[str, float]]:
        """Greedy CTC decoding of [lines, columns, characters] probabilities."""
        best = distributions.argmax(axis=2)
        probability = distributions.max(axis=2)
        if distributions.shape[2] != len(self.characters):
            raise NotReady(
                f"model {self.model!r} cannot serve: its recogniser gives "
                f"{distributions.shape[2]} classes, its {self.config.characters_file} makes "
                f"{len(self.characters)} with blank and space"
            )
        read = []
        for indices, probabilities in zip(best, probability, strict=True):
            keep = np.ones(len(indices), bool)
            keep[1:] = indices[1:] != indices[:-1]
            keep &= indices != 0
            text = "".join(self.characters[i] for i in indices[keep])
            confidence = float(np.mean(probabilities[keep])) if keep.any() else 0.0
            read.append((text, confidence))
        return read


def _line_tensor(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """A line resized to `height` (its aspect kept, at most `width`), scaled to [-1, 1]
    and padded with zeros on the right: [3, height, width]."""
    cv2 = library("cv2")
    h, w = crop.shape[:2]
    resized_width = min(width, math.ceil(height * w / float(h)))
    resized = cv2.resize(crop, (resized_width, height)).astype(np.float32)
    padded = np.zeros((3, height, width), np.float32)
    padded[:, :, :resized_width] = (resized.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return padded


def _characters(source: ModelSource, config: OcrConfig) -> list[str]:
    """CTC's blank, the file's characters in order, and the space the recogniser adds."""
    where = f"{source.name}/{config.characters_file}"
    path = (source.folder / config.characters_file).resolve()
    if not path.is_relative_to(source.folder.resolve()):
        raise InvalidInput(f"{source.name}/model.toml: [ocr] characters_file must be in the folder")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise InvalidInput(f"{where} is missing") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InvalidInput(f"{where} has no characters")
    return ["", *lines, " "]
