from __future__ import annotations

from types import TracebackType

import grpc

from modelwire.api.compat import image_classifier_pb2 as compat_pb
from modelwire.api.compat import image_classifier_pb2_grpc as compat_grpc
from modelwire.client._common import (
    CHANNEL_OPTIONS,
    ClassificationResult,
    ImageInput,
    read_image,
    translate,
)


class AsyncClient:
    """An asyncio client for one modelwire server; create and use it inside a running loop."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._compat = compat_grpc.ImageClassifierStub(self._channel)

    async def classify(
        self, image: ImageInput, *, timeout: float | None = None
    ) -> ClassificationResult:
        """Classify an image file (path) or encoded image bytes with the default model."""
        request = compat_pb.Image(data=read_image(image))
        try:
            reply = await self._compat.ClassifyImage(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return ClassificationResult(reply.label, reply.score)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
