from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

import grpc

from modelwire.api.v1 import inference_pb2_grpc, models_pb2, models_pb2_grpc
from modelwire.client._common import (
    CHANNEL_OPTIONS,
    ClassificationResult,
    ImageInput,
    classify_request,
    result,
    stream_outcome,
    stream_requests,
    translate,
)
from modelwire.errors import ModelwireError

R = TypeVar("R")


class Client:
    """A blocking client for one modelwire server. Thread-safe; close it when done."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._inference = inference_pb2_grpc.InferenceServiceStub(self._channel)
        self._models = models_pb2_grpc.ModelServiceStub(self._channel)

    def classify(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
        timeout: float | None = None,
    ) -> ClassificationResult:
        """Classify an image file (path) or encoded image bytes; model None is the
        server's default model, version None the model's default version."""
        request = classify_request(image, model, version, top_k)
        try:
            reply = self._inference.Classify(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return result(reply)

    def classify_stream(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
    ) -> Iterator[ClassificationResult | ModelwireError]:
        """Classify many images over one stream; yields one outcome per image, in order:
        a result, or the error for that image alone."""
        requests = stream_requests(images, model, version, top_k)
        try:
            for reply in self._inference.ClassifyStream(requests):
                yield stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def list_models(self) -> list[models_pb2.Model]:
        reply: models_pb2.ListModelsResponse = self._call(
            self._models.ListModels, models_pb2.ListModelsRequest()
        )
        return list(reply.models)

    def get_model(self, name: str) -> models_pb2.Model:
        reply: models_pb2.GetModelResponse = self._call(
            self._models.GetModel, models_pb2.GetModelRequest(name=name)
        )
        return reply.model

    def load_model(self, name: str) -> models_pb2.Model:
        """Load (or re-read) a model from the server's repository; the reply says how
        it went (a model that failed to load is FAILED with its reason)."""
        reply: models_pb2.LoadModelResponse = self._call(
            self._models.LoadModel, models_pb2.LoadModelRequest(name=name)
        )
        return reply.model

    def unload_model(self, name: str) -> models_pb2.Model:
        reply: models_pb2.UnloadModelResponse = self._call(
            self._models.UnloadModel, models_pb2.UnloadModelRequest(name=name)
        )
        return reply.model

    def reload_model(self, name: str) -> models_pb2.Model:
        reply: models_pb2.ReloadModelResponse = self._call(
            self._models.ReloadModel, models_pb2.ReloadModelRequest(name=name)
        )
        return reply.model

    def _call(self, method: Callable[..., R], request: object) -> R:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

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
