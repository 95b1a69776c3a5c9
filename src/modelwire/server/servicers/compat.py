"""The source document's `ImageClassifier` service, answered by the default model."""

from __future__ import annotations

from modelwire.api.compat import image_classifier_pb2 as pb
from modelwire.api.compat import image_classifier_pb2_grpc as pb_grpc
from modelwire.core.inference import InferenceEngine
from modelwire.server.status import Context, grpc_errors

__all__ = ["SERVICE_NAME", "ImageClassifierServicer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ImageClassifier"].full_name


class ImageClassifierServicer(pb_grpc.ImageClassifierServicer):
    """Routes to the default model's default version through the same engine."""

    def __init__(self, engine: InferenceEngine) -> None:
        self._engine = engine

    @grpc_errors
    async def ClassifyImage(self, request: pb.Image, context: Context) -> pb.ClassificationResult:
        result = await self._engine.classify(request.data)
        return pb.ClassificationResult(label=result.top.label, score=result.top.score)
