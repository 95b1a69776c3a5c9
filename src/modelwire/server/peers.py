"""How the worker processes of `serve --workers N` reach each other.

Every worker serves the public ports (shared with SO_REUSEPORT) and, on a Unix socket in
the supervisor's private run folder, an internal gRPC server with no authentication
(the folder is the caller's own, mode 0700):

- ModelService, so a load or unload asked of one worker is repeated in the others
  (`PeerModels`, the engine's announcer). Trained versions reach every worker this way:
  the trainer's publish step loads the model, which announces it.
- TrainingService on worker 0, which alone runs training jobs (one queue, one owner of
  the trainer processes); the others forward their TrainingService calls to it
  (`TrainingProxyServicer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import grpc

from modelwire.api.v1 import models_pb2, models_pb2_grpc
from modelwire.api.v1 import training_pb2 as pb
from modelwire.api.v1 import training_pb2_grpc as pb_grpc
from modelwire.server.status import Context

__all__ = ["PeerModels", "TrainingProxyServicer", "WorkerRole"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a forwarded call waits for worker 0 when it is (re)starting.
_OWNER_WAIT_S = 30.0
#: How long a peer may take to repeat a load (it reads the model files again).
_PEER_LOAD_S = 120.0
#: Metadata keys of an error that travel back through the proxy.
_ERROR_METADATA = ("grpc-status-details-bin",)


@dataclass(frozen=True)
class WorkerRole:
    """Which worker this process is, of how many, and where their sockets are."""

    index: int
    count: int
    run_dir: Path

    def address(self, index: int) -> str:
        return f"unix:{self.run_dir / f'worker-{index}.sock'}"

    @property
    def trains(self) -> bool:
        """Worker 0 runs the training jobs."""
        return self.index == 0

    @property
    def peers(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]


class PeerModels:
    """The engine's announcer: repeats a load or unload in every other worker. A worker
    that cannot be reached (restarting) loads what is on disk when it starts."""

    def __init__(self, role: WorkerRole) -> None:
        self._channels = {i: grpc.aio.insecure_channel(role.address(i)) for i in role.peers}

    async def loaded(self, name: str) -> None:
        request = models_pb2.LoadModelRequest(name=name)
        await self._each(lambda stub: stub.LoadModel(request, timeout=_PEER_LOAD_S), name)

    async def unloaded(self, name: str) -> None:
        request = models_pb2.UnloadModelRequest(name=name)
        await self._each(lambda stub: stub.UnloadModel(request, timeout=_PEER_LOAD_S), name)

    async def _each(
        self, call: Callable[[models_pb2_grpc.ModelServiceStub], Awaitable[object]], name: str
    ) -> None:
        peers = list(self._channels.items())
        results = await asyncio.gather(
            *(call(models_pb2_grpc.ModelServiceStub(channel)) for _, channel in peers),
            return_exceptions=True,
        )
        for (index, _), result in zip(peers, results, strict=True):
            if isinstance(result, grpc.aio.AioRpcError):
                log.warning(
                    "worker %d did not take the change to model %s: %s %s",
                    index,
                    name,
                    result.code().name,
                    result.details(),
                )
            elif isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        await asyncio.gather(*(channel.close(None) for channel in self._channels.values()))


class TrainingProxyServicer(pb_grpc.TrainingServiceServicer):
    """TrainingService of a worker other than 0: every call is worker 0's."""

    def __init__(self, owner: str) -> None:
        self._channel = grpc.aio.insecure_channel(owner)
        self._stub = pb_grpc.TrainingServiceStub(self._channel)

    async def _forward(
        self, call: Callable[..., Awaitable[T]], request: object, context: Context
    ) -> T:
        remaining = context.time_remaining()
        timeout = _OWNER_WAIT_S if remaining is None else min(remaining, _OWNER_WAIT_S)
        try:
            return await call(request, timeout=timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as error:
            await _abort_with(context, error)
            raise  # unreachable: abort raises

    async def StartTraining(
        self, request: pb.StartTrainingRequest, context: Context
    ) -> pb.StartTrainingResponse:
        return await self._forward(self._stub.StartTraining, request, context)

    async def CancelTraining(
        self, request: pb.CancelTrainingRequest, context: Context
    ) -> pb.CancelTrainingResponse:
        return await self._forward(self._stub.CancelTraining, request, context)

    async def ListTrainingJobs(
        self, request: pb.ListTrainingJobsRequest, context: Context
    ) -> pb.ListTrainingJobsResponse:
        return await self._forward(self._stub.ListTrainingJobs, request, context)

    async def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: Context
    ) -> pb.GetTrainingJobResponse:
        return await self._forward(self._stub.GetTrainingJob, request, context)

    async def WatchTraining(
        self, request: pb.WatchTrainingRequest, context: Context
    ) -> AsyncIterator[pb.WatchTrainingResponse]:
        call = self._stub.WatchTraining(request, wait_for_ready=True)
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as error:
            await _abort_with(context, error)
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close(None)


async def _abort_with(context: Context, error: grpc.aio.AioRpcError) -> None:
    # At run time the metadata are (key, value) tuples, whatever grpc-stubs says.
    trailing = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    metadata = [(key, value) for key, value in trailing if key in _ERROR_METADATA]
    await context.abort(error.code(), error.details() or "", tuple(metadata))
