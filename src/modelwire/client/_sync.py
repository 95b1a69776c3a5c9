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


class Client:
    """A blocking client for one modelwire server. Thread-safe; close it when done."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._compat = compat_grpc.ImageClassifierStub(self._channel)

    def classify(self, image: ImageInput, *, timeout: float | None = None) -> ClassificationResult:
        """Classify an image file (path) or encoded image bytes with the default model."""
        request = compat_pb.Image(data=read_image(image))
        try:
            reply = self._compat.ClassifyImage(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return ClassificationResult(reply.label, reply.score)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
