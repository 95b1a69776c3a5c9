"""What the blocking and the asyncio client share: the target, the timeout and the stubs
on their channel (httpx's BaseClient, Client and AsyncClient are the shape). Requests
are built and replies read by the functions of `_common`, `_speech` and `_vision`, so a
method of either client is the call and its error translation, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health_pb2_grpc

from modelwire.api.oip import grpc_predict_v2_pb2_grpc as oip_pb2_grpc
from modelwire.api.v1 import (
    datasets_pb2_grpc,
    inference_pb2_grpc,
    models_pb2_grpc,
    speech_pb2_grpc,
    training_pb2_grpc,
    vision_pb2_grpc,
)
from modelwire.client._channel import Connection, PemInput


class ClientBase:
    def __init__(
        self,
        target: str | Sequence[str] = "localhost:50051",
        *,
        timeout: float | None = 30.0,
        ca: PemInput | None = None,
        cert: PemInput | None = None,
        key: PemInput | None = None,
        token: str | None = None,
        tls: bool = False,
        balance: bool | None = None,
        connections: int = 1,
    ) -> None:
        """`target` is one HOST:PORT, or several addresses (a list, or comma-separated):
        then calls are balanced round-robin over the healthy ones, and calls safe to
        repeat are retried elsewhere when one fails; `balance=True` does the same for a
        DNS name that resolves to many replicas.
        `ca` (trusted roots; None: the system's), `cert` and `key` (a client
        certificate, for mutual TLS) are PEM files or bytes, and any of them turns TLS
        on, as does `tls`; `token` is sent as `authorization: Bearer <token>`.
        `connections` > 1 spreads the calls over that many connections (per address),
        so one client reaches every worker of a server started with `--workers`."""
        self.target = target if isinstance(target, str) else ",".join(target)
        self.timeout = timeout
        channel = self._open(Connection(target, ca, cert, key, token, tls, balance, connections))
        self._inference = inference_pb2_grpc.InferenceServiceStub(channel)
        self._speech = speech_pb2_grpc.SpeechServiceStub(channel)
        self._vision = vision_pb2_grpc.VisionServiceStub(channel)
        self._oip = oip_pb2_grpc.GRPCInferenceServiceStub(channel)
        self._models = models_pb2_grpc.ModelServiceStub(channel)
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        self._training = training_pb2_grpc.TrainingServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    def _open(self, connection: Connection) -> Any:
        """The channel the stubs call on (grpc's blocking or asyncio kind)."""
        raise NotImplementedError
