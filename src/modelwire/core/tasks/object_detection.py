"""Object detection: a picture → the detector's input → boxes with labels and scores.

`method = "db"` is Differentiable Binarization (the PP-OCR text detectors): the model
gives a probability per pixel that it is text; pixels above `threshold` form regions,
each region's rotated bounding rectangle is kept when its mean probability reaches
`box_threshold`, then grown by `unclip_ratio` (the model is trained on shrunken
regions) and mapped back to the picture. The boxes then pass non-maximum suppression and
the request's `score_threshold` and `max_detections`.

Pictures are decoded by the shared image decoder (and its limits). A picture whose longer
side passes `max_side` is reduced to it, one whose shorter side is under 30 pixels
enlarged to that, then it is scaled so its shorter side reaches `limit_side`, each side
rounded to a multiple of 32 as the network needs. OpenCV does the geometry (contours,
rotated rectangles, resizing) and pyclipper the polygon offset: the `ocr` extra.

Over the Open Inference Protocol the model is its tensors, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from modelwire.core.backends import BackendInfo
from modelwire.core.extras import optional
from modelwire.core.images import DecodeLimits, decode
from modelwire.core.repository import ModelSource
from modelwire.core.tasks import Encoded, Item
from modelwire.core.tasks.tensor import TensorTask
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput

__all__ = ["Detection", "ObjectDetectionTask", "Prepared", "library"]

_MIN_SIDE = 30
#: The most objects one request may ask for.
MAX_DETECTIONS = 10_000


def library(name: str) -> ModuleType:
    """cv2 or pyclipper: the `ocr` extra, imported when first needed."""
    return optional(name, "ocr")


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    #: Four corners (x, y) in the picture's pixels: top-left, top-right, bottom-right,
    #: bottom-left of the box as it lies.
    box: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Prepared:
    """A picture ready for the detector: the network's input, the picture as the boxes
    are found on (BGR, after the max_side/min side limits), and its scale back to the
    original."""

    tensor: np.ndarray
    image: np.ndarray
    scale_x: float
    scale_y: float
    width: int
    height: int


class ObjectDetectionTask:
    name = "object-detection"

    def __init__(self, source: ModelSource, info: BackendInfo, limits: DecodeLimits) -> None:
        config = source.config.detection
        assert config is not None  # the schema asks for it
        self.config = config
        self.labels = source.labels
        self._limits = limits
        self._tensors = TensorTask(info)
        self._where = f"{source.name}/{source.version}"
        if len(info.inputs) != 1 or len(info.outputs) != 1:
            raise InvalidInput(f"{self._where}: a db detector has one input and one output")

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._tensors.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._tensors.outputs

    def encode(self, items: Sequence[Item]) -> Encoded:
        return self._tensors.encode(items)

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        return outputs

    def prepare(self, data: bytes) -> Prepared:
        """Decode and scale a picture (blocking)."""
        cv2 = library("cv2")
        picture = decode(data, self._limits).convert("RGB")
        width, height = picture.size
        rgb = np.asarray(picture)
        image = np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, as the PP-OCR models read
        scale_x = scale_y = 1.0
        if max(height, width) > self.config.max_side:
            image, scale_x, scale_y = _rescale(
                cv2, image, self.config.max_side / max(height, width)
            )
        elif min(height, width) < _MIN_SIDE:
            image, scale_x, scale_y = _rescale(cv2, image, _MIN_SIDE / min(height, width))
        h, w = image.shape[:2]
        # Enlarged until the shorter side reaches limit_side, but never past twice
        # max_side on the longer (a 2000 x 32 strip would become 46,000 pixels wide).
        ratio = max(
            1.0, min(self.config.limit_side / min(h, w), 2 * self.config.max_side / max(h, w))
        )
        size = (_multiple_of_32(w * ratio), _multiple_of_32(h * ratio))
        resized = cv2.resize(image, size)
        mean = np.array(self.config.mean, np.float32)
        std = np.array(self.config.std, np.float32)
        normalised = (resized.astype(np.float32) / 255.0 - mean) / std
        tensor = normalised.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
        return Prepared(tensor, image, scale_x, scale_y, width, height)

    def boxes(
        self, probabilities: np.ndarray, prepared: Prepared
    ) -> list[tuple[np.ndarray, float]]:
        """The text regions of the detector's output, in `prepared.image`'s pixels, each
        as its four corners (clockwise from top-left) and score, after suppression."""
        cv2 = library("cv2")
        config = self.config
        map_h, map_w = (int(side) for side in np.shape(probabilities)[-2:])
        probability = np.asarray(probabilities, np.float32).reshape(map_h, map_w)
        mask = (probability > config.threshold).astype(np.uint8)
        if config.dilate:
            mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        image_h, image_w = prepared.image.shape[:2]
        found: list[tuple[np.ndarray, float]] = []
        for contour in contours[: config.max_candidates]:
            corners, short = _rectangle(cv2, contour)
            if short < 3:
                continue
            score = _mean_inside(cv2, probability, corners)
            if score < config.box_threshold:
                continue
            corners, short = _rectangle(cv2, _grown(corners, config.unclip_ratio))
            if short < 5:
                continue
            corners[:, 0] = np.clip(np.round(corners[:, 0] / map_w * image_w), 0, image_w)
            corners[:, 1] = np.clip(np.round(corners[:, 1] / map_h * image_h), 0, image_h)
            box = _clockwise(corners.astype(np.int32).astype(np.float32))
            box[:, 0] = np.clip(np.floor(box[:, 0]), 0, image_w - 1)
            box[:, 1] = np.clip(np.floor(box[:, 1]), 0, image_h - 1)
            if (
                int(np.linalg.norm(box[0] - box[1])) <= 3
                or int(np.linalg.norm(box[0] - box[3])) <= 3
            ):
                continue
            found.append((box, float(score)))
        return _suppressed(found, config.iou_threshold)

    def detections(
        self,
        found: list[tuple[np.ndarray, float]],
        prepared: Prepared,
        score_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        """Boxes in the original picture's pixels, best first."""
        label = self.labels[0] if self.labels else "object"
        kept = sorted((f for f in found if f[1] >= score_threshold), key=lambda f: -f[1])
        return [
            Detection(label, score, original_corners(box, prepared))
            for box, score in kept[:max_detections]
        ]


def original_corners(box: np.ndarray, prepared: Prepared) -> tuple[tuple[float, float], ...]:
    x = np.clip(box[:, 0] * prepared.scale_x, 0, prepared.width)
    y = np.clip(box[:, 1] * prepared.scale_y, 0, prepared.height)
    return tuple((float(a), float(b)) for a, b in zip(x, y, strict=True))


def _multiple_of_32(length: float) -> int:
    return max(32, int(round(int(length) / 32) * 32))


def _rescale(cv2: Any, image: np.ndarray, ratio: float) -> tuple[np.ndarray, float, float]:
    h, w = image.shape[:2]
    size = (_multiple_of_32(w * ratio), _multiple_of_32(h * ratio))
    resized = cv2.resize(image, size)
    return resized, w / size[0], h / size[1]


def _rectangle(cv2: Any, points: np.ndarray) -> tuple[np.ndarray, float]:
    """The rotated rectangle of least area around `points`: its corners (top-left,
    top-right, bottom-right, bottom-left, by x then y) and its shorter side."""
    rectangle = cv2.minAreaRect(points)
    return _clockwise(np.asarray(cv2.boxPoints(rectangle), np.float32)), float(min(rectangle[1]))


def _mean_inside(cv2: Any, probability: np.ndarray, corners: np.ndarray) -> float:
    h, w = probability.shape
    x0 = int(np.clip(np.floor(corners[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    shifted = corners - np.array([x0, y0], np.float32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(probability[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def _grown(corners: np.ndarray, ratio: float) -> np.ndarray:
    """The region grown by area * ratio / perimeter, with round corners (pyclipper)."""
    pyclipper = library("pyclipper")
    area = abs(_shoelace(corners))
    perimeter = float(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).sum())
    distance = area * ratio / perimeter if perimeter else 0.0
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(corners.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(distance)
    if not paths:
        return corners
    return np.array(paths[0], np.float32).reshape(-1, 1, 2)


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clockwise(points: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


def _suppressed(
    found: list[tuple[np.ndarray, float]], iou_threshold: float
) -> list[tuple[np.ndarray, float]]:
    """Non-maximum suppression on the boxes' upright bounds, best score first; the
    survivors keep their order."""
    if len(found) < 2:
        return found
    bounds = np.array(
        [[b[:, 0].min(), b[:, 1].min(), b[:, 0].max(), b[:, 1].max()] for b, _ in found]
    )
    areas = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
    order = sorted(range(len(found)), key=lambda i: -found[i][1])
    dropped: set[int] = set()
    for rank, i in enumerate(order):
        if i in dropped:
            continue
        for j in order[rank + 1 :]:
            if j in dropped:
                continue
            width = min(bounds[i, 2], bounds[j, 2]) - max(bounds[i, 0], bounds[j, 0])
            height = min(bounds[i, 3], bounds[j, 3]) - max(bounds[i, 1], bounds[j, 1])
            overlap = max(0.0, width) * max(0.0, height)
            union = areas[i] + areas[j] - overlap
            if union > 0 and overlap / union > iou_threshold:
                dropped.add(j)
    return [f for index, f in enumerate(found) if index not in dropped]


def check_request(score_threshold: float, max_detections: int) -> None:
    if not (0.0 <= score_threshold <= 1.0) or math.isnan(score_threshold):
        raise InvalidInput(
            f"score_threshold must be between 0 and 1, got {score_threshold}",
            field="score_threshold",
        )
    if not 1 <= max_detections <= MAX_DETECTIONS:
        raise InvalidInput(
            f"max_detections must be between 1 and {MAX_DETECTIONS}, got {max_detections}",
            field="max_detections",
        )
