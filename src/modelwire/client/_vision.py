"""The vision API's requests and results, shared by `Client` and `AsyncClient`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from modelwire.api.v1 import vision_pb2
from modelwire.client._common import ImageInput, read_image, stream_error
from modelwire.errors import ModelwireError

__all__ = [
    "DetectedObject",
    "Detections",
    "TextLine",
    "TextReading",
    "detect_request",
    "detections",
    "read_text_request",
    "read_text_stream_requests",
    "reading",
    "reading_outcome",
]

Corners = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    #: Top-left, top-right, bottom-right, bottom-left, in pixels.
    box: Corners


@dataclass(frozen=True)
class TextReading:
    model: str
    version: int
    lines: tuple[TextLine, ...]

    @property
    def text(self) -> str:
        """The lines, one per line of text."""
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class DetectedObject:
    label: str
    score: float
    box: Corners


@dataclass(frozen=True)
class Detections:
    model: str
    version: int
    objects: tuple[DetectedObject, ...]


def _corners(points: Iterable[vision_pb2.Point]) -> Corners:
    return tuple((p.x, p.y) for p in points)


def read_text_request(
    image: ImageInput, model: str | None, version: int | None
) -> vision_pb2.ReadTextRequest:
    return vision_pb2.ReadTextRequest(
        model=model or "", version=version or 0, image=read_image(image)
    )


def read_text_stream_requests(
    images: Iterable[ImageInput], model: str | None, version: int | None
) -> Iterator[vision_pb2.ReadTextStreamRequest]:
    for index, image in enumerate(images):
        yield vision_pb2.ReadTextStreamRequest(
            id=str(index), request=read_text_request(image, model, version)
        )


def reading(reply: vision_pb2.ReadTextResponse) -> TextReading:
    lines = tuple(TextLine(t.text, t.confidence, _corners(t.box)) for t in reply.lines)
    return TextReading(reply.model, reply.version, lines)


def reading_outcome(reply: vision_pb2.ReadTextStreamResponse) -> TextReading | ModelwireError:
    if reply.HasField("error"):
        return stream_error(reply.error)
    return reading(reply.response)


def detect_request(
    image: ImageInput,
    model: str | None,
    version: int | None,
    score_threshold: float,
    max_detections: int,
) -> vision_pb2.DetectRequest:
    return vision_pb2.DetectRequest(
        model=model or "",
        version=version or 0,
        image=read_image(image),
        score_threshold=score_threshold,
        max_detections=max_detections,
    )


def detections(reply: vision_pb2.DetectResponse) -> Detections:
    found = tuple(DetectedObject(o.label, o.score, _corners(o.box)) for o in reply.objects)
    return Detections(reply.model, reply.version, found)
