"""modelwire.api.v1.InferenceService: classification and text embedding, unary and over
bidirectional streams."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from modelwire.core.inference import Classification, Embeddings, InferenceEngine
from modelwire.errors import INTERNAL_MESSAGE, ModelwireError
from modelwire.server.convert import classify_response, classify_text_response, embed_response
from modelwire.server.status import Context, grpc_errors, status_code
from modelwire.server.streams import answer_in_order

__all__ = ["SERVICE_NAME", "InferenceServicer", "stream_outcome"]

log = logging.getLogger(__name__)

R = TypeVar("R")

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

    @grpc_errors
    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        return embed_response(await self._embed(request))

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedStreamRequest], context: Context
    ) -> AsyncIterator[pb.EmbedStreamResponse]:
        async for response in answer_in_order(request_iterator, self._embedded, self._window):
            yield response

    @grpc_errors
    async def ClassifyText(
        self, request: pb.ClassifyTextRequest, context: Context
    ) -> pb.ClassifyTextResponse:
        return classify_text_response(await self._classify_text(request))

    async def ClassifyTextStream(
        self, request_iterator: AsyncIterator[pb.ClassifyTextStreamRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyTextStreamResponse]:
        answers = answer_in_order(request_iterator, self._text_classified, self._window)
        async for response in answers:
            yield response

    def _classify_text(self, request: pb.ClassifyTextRequest) -> Awaitable[list[Classification]]:
        return self._engine.classify_text(
            request.model, request.version or None, request.texts, request.top_k or 1
        )

    async def _text_classified(
        self, message: pb.ClassifyTextStreamRequest
    ) -> pb.ClassifyTextStreamResponse:
        outcome = await stream_outcome(self._classify_text(message.request), "ClassifyTextStream")
        if isinstance(outcome, pb.StreamError):
            return pb.ClassifyTextStreamResponse(id=message.id, error=outcome)
        return pb.ClassifyTextStreamResponse(
            id=message.id, response=classify_text_response(outcome)
        )

    def _embed(self, request: pb.EmbedRequest) -> Awaitable[Embeddings]:
        return self._engine.embed(request.model, request.version or None, request.texts)

    async def _answer(self, message: pb.ClassifyStreamRequest) -> pb.ClassifyStreamResponse:
        request = message.request
        work = self._engine.classify(
            request.image, request.model, request.version or None, request.top_k or 1
        )
        outcome = await stream_outcome(work, "ClassifyStream")
        if isinstance(outcome, pb.StreamError):
            return pb.ClassifyStreamResponse(id=message.id, error=outcome)
        return pb.ClassifyStreamResponse(id=message.id, response=classify_response(outcome))

    async def _embedded(self, message: pb.EmbedStreamRequest) -> pb.EmbedStreamResponse:
        outcome = await stream_outcome(self._embed(message.request), "EmbedStream")
        if isinstance(outcome, pb.StreamError):
            return pb.EmbedStreamResponse(id=message.id, error=outcome)
        return pb.EmbedStreamResponse(id=message.id, response=embed_response(outcome))


async def stream_outcome(work: Awaitable[R], method: str) -> R | pb.StreamError:
    """What one stream message's work gives, or the StreamError it fails with."""
    try:
        return await work
    except ModelwireError as error:
        return pb.StreamError(code=status_code(error).value[0], message=error.message)
    except Exception:
        log.exception("unexpected error in a %s message", method)
        return pb.StreamError(code=13, message=INTERNAL_MESSAGE)
