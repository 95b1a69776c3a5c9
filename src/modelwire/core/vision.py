"""Detecting objects and reading text: the steps between a picture and the answer, each
model's run going through that model's batcher, the work between them in the engine's
threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from modelwire.core.tasks.object_detection import (
    Detection,
    ObjectDetectionTask,
    Prepared,
    original_corners,
)
from modelwire.core.tasks.ocr import OcrTask, TextLine

__all__ = ["Detections", "Reading", "find_boxes", "read_lines"]

R = TypeVar("R")

#: Runs a served model of one input and one output on a tensor: its output.
Run = Callable[[np.ndarray], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class Detections:
    model: str
    version: int
    detections: tuple[Detection, ...]


@dataclass(frozen=True)
class Reading:
    model: str
    version: int
    lines: tuple[TextLine, ...]


async def _off_loop(executor: Executor, function: Callable[..., R], *args: Any) -> R:
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)


async def find_boxes(
    task: ObjectDetectionTask, run: Run, data: bytes, executor: Executor
) -> tuple[Prepared, list[tuple[np.ndarray, float]]]:
    """The picture as the boxes are found on, and the detector's boxes in it."""
    prepared = await _off_loop(executor, task.prepare, data)
    probabilities = await run(prepared.tensor)
    found = await _off_loop(executor, task.boxes, probabilities, prepared)
    return prepared, found


async def read_lines(
    task: OcrTask,
    detector: ObjectDetectionTask,
    run_detector: Run,
    run_classifier: Run | None,
    run_recognizer: Run,
    data: bytes,
    executor: Executor,
) -> list[TextLine]:
    prepared, found = await find_boxes(detector, run_detector, data, executor)
    if not found:
        return []
    ordered = await _off_loop(executor, task.reading_order, found)
    crops = await _off_loop(executor, task.crops, prepared.image, [box for box, _ in ordered])
    if run_classifier is not None:
        batches = await _off_loop(executor, task.classifier_batches, crops)
        scores = await asyncio.gather(*(run_classifier(tensor) for _, tensor in batches))
        for (group, _), batch_scores in zip(batches, scores, strict=True):
            task.turn_upside_down_lines(crops, group, batch_scores)
    read: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    batches = await _off_loop(executor, task.recognizer_batches, crops)
    answers = await asyncio.gather(*(run_recognizer(tensor) for _, tensor in batches))
    for (group, _), distributions in zip(batches, answers, strict=True):
        decoded = await _off_loop(executor, task.decode, distributions)
        for index, line in zip(group, decoded, strict=True):
            read[index] = line
    threshold = task.config.text_threshold
    return [
        TextLine(text, confidence, original_corners(box, prepared))
        for (box, _), (text, confidence) in zip(ordered, read, strict=True)
        if confidence >= threshold and text.strip()
    ]
