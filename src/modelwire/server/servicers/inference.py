"""modelwire.api.v1.InferenceService: unary and bidirectional-streaming classification."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from modelwire.core.inference import InferenceEngine
from modelwire.errors import INTERNAL_MESSAGE, ModelwireError
from modelwire.server.convert import classify_response
from modelwire.server.status import Context, grpc_errors, status_code
from modelwire.server.streams import answer_in_order

__all__ = ["SERVICE_NAME", "InferenceServicer"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, engine: InferenceEngine, stream_window: int) -> None:
        self._engine = engine
        self._window = stream_window

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        result = await self._engine.classify(
            request.image, request.model, request.version or None, request.top_k or 1
        )
        return classify_response(result)

    async def ClassifyStream(
        self, request_iterator: AsyncIterator[pb.ClassifyStreamRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        async for response in answer_in_order(request_iterator, self._answer, self._window):
            yield response

    async def _answer(self, message: pb.ClassifyStreamRequest) -> pb.ClassifyStreamResponse:
        request = message.request
        try:
            result = await self._engine.classify(
                request.image, request.model, request.version or None, request.top_k or 1
            )
        except ModelwireError as error:
            code = status_code(error).value[0]
            return pb.ClassifyStreamResponse(
                id=message.id, error=pb.StreamError(code=code, message=error.message)
            )
        except Exception:
            log.exception("unexpected error in a ClassifyStream message")
            return pb.ClassifyStreamResponse(
                id=message.id, error=pb.StreamError(code=13, message=INTERNAL_MESSAGE)
            )
        return pb.ClassifyStreamResponse(id=message.id, response=classify_response(result))
