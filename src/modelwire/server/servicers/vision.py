"""modelwire.api.v1.VisionService: objects and text in pictures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

from modelwire.api.v1 import vision_pb2 as pb
from modelwire.api.v1 import vision_pb2_grpc as pb_grpc
from modelwire.core.inference import InferenceEngine
from modelwire.core.vision import Detections, Reading
from modelwire.server.servicers.inference import stream_outcome
from modelwire.server.status import Context, grpc_errors
from modelwire.server.streams import answer_in_order

__all__ = ["SERVICE_NAME", "VisionServicer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VisionService"].full_name


class VisionServicer(pb_grpc.VisionServiceServicer):
    def __init__(self, engine: InferenceEngine, stream_window: int) -> None:
        self._engine = engine
        self._window = stream_window

    @grpc_errors
    async def Detect(self, request: pb.DetectRequest, context: Context) -> pb.DetectResponse:
        result = await self._engine.detect(
            request.model,
            request.version or None,
            request.image,
            request.score_threshold,
            request.max_detections,
        )
        return _detect_response(result)

    @grpc_errors
    async def ReadText(self, request: pb.ReadTextRequest, context: Context) -> pb.ReadTextResponse:
        return read_text_response(await self._read(request))

    async def ReadTextStream(
        self, request_iterator: AsyncIterator[pb.ReadTextStreamRequest], context: Context
    ) -> AsyncIterator[pb.ReadTextStreamResponse]:
        async for response in answer_in_order(request_iterator, self._answer, self._window):
            yield response

    def _read(self, request: pb.ReadTextRequest) -> Awaitable[Reading]:
        return self._engine.read_text(request.model, request.version or None, request.image)

    async def _answer(self, message: pb.ReadTextStreamRequest) -> pb.ReadTextStreamResponse:
        outcome = await stream_outcome(self._read(message.request), "ReadTextStream")
        if isinstance(outcome, Reading):
            return pb.ReadTextStreamResponse(id=message.id, response=read_text_response(outcome))
        return pb.ReadTextStreamResponse(id=message.id, error=outcome)


def _points(box: tuple[tuple[float, float], ...]) -> list[pb.Point]:
    return [pb.Point(x=x, y=y) for x, y in box]


def _detect_response(result: Detections) -> pb.DetectResponse:
    return pb.DetectResponse(
        model=result.model,
        version=result.version,
        objects=[
            pb.DetectedObject(label=d.label, score=d.score, box=_points(d.box))
            for d in result.detections
        ],
    )


def read_text_response(result: Reading) -> pb.ReadTextResponse:
    return pb.ReadTextResponse(
        model=result.model,
        version=result.version,
        lines=[
            pb.TextLine(text=line.text, confidence=line.confidence, box=_points(line.box))
            for line in result.lines
        ],
    )
