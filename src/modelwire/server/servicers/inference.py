"""modelwire.api.v1.InferenceService: unary and bidirectional-streaming classification."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from modelwire.core.inference import InferenceEngine
from modelwire.errors import ModelwireError
from modelwire.server.convert import classify_response
from modelwire.server.status import INTERNAL_MESSAGE, Context, grpc_errors, status_code

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
        # A reader task feeds up to `window` messages into the engine at once; this
        # generator answers them in order. When the client stops reading, the yields
        # block, the window stays full and the reader stops reading: HTTP/2 flow control
        # then slows the client down.
        window = asyncio.Semaphore(self._window)
        answers: asyncio.Queue[asyncio.Task[pb.ClassifyStreamResponse] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for message in request_iterator:
                    await window.acquire()
                    answers.put_nowait(asyncio.ensure_future(self._answer(message)))
            finally:
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await answers.get()) is not None:
                response = await answer
                window.release()
                yield response
            await reader
        finally:
            reader.cancel()
            while not answers.empty():
                leftover = answers.get_nowait()
                if leftover is not None:
                    leftover.cancel()

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
