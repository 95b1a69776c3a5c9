"""modelwire.api.v1.ModelService: list, describe, load, unload and reload models."""

from __future__ import annotations

from modelwire.api.v1 import models_pb2 as pb
from modelwire.api.v1 import models_pb2_grpc as pb_grpc
from modelwire.core.models import ModelManager, ModelStatus
from modelwire.errors import ModelwireError
from modelwire.server.convert import model_message
from modelwire.server.status import Context, grpc_errors

__all__ = ["SERVICE_NAME", "ModelServicer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelService"].full_name


class ModelServicer(pb_grpc.ModelServiceServicer):
    def __init__(self, models: ModelManager, *, announce: bool = True) -> None:
        """`announce=False` for the other workers' calls, which announce themselves."""
        self._models = models
        self._announce = announce

    def _message(self, status: ModelStatus) -> pb.Model:
        try:
            default_version: int | None = self._models.resolve(status.name).version
        except ModelwireError:
            default_version = None
        return model_message(status, default_version)

    @grpc_errors
    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[self._message(s) for s in self._models.statuses()])

    @grpc_errors
    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        return pb.GetModelResponse(model=self._message(self._models.status(request.name)))

    @grpc_errors
    async def LoadModel(
        self, request: pb.LoadModelRequest, context: Context
    ) -> pb.LoadModelResponse:
        status = await self._models.load(request.name, announce=self._announce)
        return pb.LoadModelResponse(model=self._message(status))

    @grpc_errors
    async def UnloadModel(
        self, request: pb.UnloadModelRequest, context: Context
    ) -> pb.UnloadModelResponse:
        status = await self._models.unload(request.name, announce=self._announce)
        return pb.UnloadModelResponse(model=self._message(status))

    @grpc_errors
    async def ReloadModel(
        self, request: pb.ReloadModelRequest, context: Context
    ) -> pb.ReloadModelResponse:
        status = await self._models.load(request.name, announce=self._announce)
        return pb.ReloadModelResponse(model=self._message(status))
