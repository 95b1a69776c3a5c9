"""Channels to modelwire servers: plaintext or TLS (optionally with a client certificate
for mutual TLS), a bearer token sent with every call, and, across replicas, gRPC's own
client-side balancing: `round_robin` over every address of the target (several
addresses, or a DNS name with many), skipping replicas whose health service says
NOT_SERVING, and retrying calls that are safe to repeat when a replica is UNAVAILABLE."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from modelwire.client._pool import OWN_CONNECTION, PooledAioChannel, PooledChannel

__all__ = ["Connection"]

#: Calls that change nothing on the server: retried on another replica when one is
#: UNAVAILABLE (streams are not: a retry would replay what the stream already did).
IDEMPOTENT = [
    {"service": "ImageClassifier"},
    {"service": "modelwire.api.v1.InferenceService", "method": "Classify"},
    {"service": "modelwire.api.v1.ModelService", "method": "ListModels"},
    {"service": "modelwire.api.v1.ModelService", "method": "GetModel"},
    {"service": "inference.GRPCInferenceService", "method": "ModelInfer"},
    {"service": "inference.GRPCInferenceService", "method": "ModelMetadata"},
    {"service": "inference.GRPCInferenceService", "method": "ModelReady"},
    {"service": "inference.GRPCInferenceService", "method": "ServerMetadata"},
    {"service": "modelwire.api.v1.DatasetService", "method": "GetDataset"},
    {"service": "modelwire.api.v1.DatasetService", "method": "ListDatasets"},
    {"service": "modelwire.api.v1.TrainingService", "method": "GetTrainingJob"},
    {"service": "modelwire.api.v1.TrainingService", "method": "ListTrainingJobs"},
]

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [
        {
            "name": IDEMPOTENT,
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # The client does not cap sizes itself: the server's limit decides and says so.
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
BALANCING_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
]


def channel_target(targets: str | Sequence[str]) -> str:
    """One gRPC target for one address or several: "host:port" as it is (a DNS name
    with many addresses is balanced over all of them), several IP "host:port" as
    gRPC's ipv4:/ipv6: address lists."""
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if not targets:
        raise ValueError("no target given")
    if len(targets) == 1:
        return targets[0]
    families = set()
    for target in targets:
        host = target.rsplit(":", 1)[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise ValueError(
                f"several targets must be IP:port addresses, got {target!r}; for names, "
                "give one DNS name that resolves to every replica"
            ) from None
    if len(families) > 1:
        raise ValueError("several targets must all be IPv4 or all IPv6")
    return f"ipv{families.pop()}:" + ",".join(targets)


PemInput = str | os.PathLike[str] | bytes


def _pem(value: PemInput | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class Connection:
    """How to reach a server. TLS is on when `tls` is true or any of `ca`, `cert`,
    `key` is given (`ca` None: the system's trusted roots); `cert` and `key` are the
    client certificate for mutual TLS; `token` goes in `authorization: Bearer ...`."""

    target: str | Sequence[str]
    ca: PemInput | None = None
    cert: PemInput | None = None
    key: PemInput | None = None
    token: str | None = None
    tls: bool = False
    #: Balance over replicas (round_robin, health checking, retries); None: when
    #: several targets are given. Set it for a DNS name that resolves to many.
    balance: bool | None = None
    #: Connections (per address) the calls are spread over, one after the other: a
    #: server with `--workers N` gives each connection to one of its workers.
    connections: int = 1

    @property
    def options(self) -> list[tuple[str, Any]]:
        several = not isinstance(self.target, str) or "," in self.target
        balance = several if self.balance is None else self.balance
        own = [OWN_CONNECTION] if self.connections > 1 else []
        return CHANNEL_OPTIONS + (BALANCING_OPTIONS if balance else []) + own

    @property
    def secure(self) -> bool:
        return self.tls or any(v is not None for v in (self.ca, self.cert, self.key))

    def _credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca),
            private_key=_pem(self.key),
            certificate_chain=_pem(self.cert),
        )

    def metadata(self) -> Sequence[tuple[str, str]]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self) -> grpc.Channel:
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.connections > 1:
            return PooledChannel([self._one_channel() for _ in range(self.connections)])
        return self._one_channel()

    def _one_channel(self) -> grpc.Channel:
        if self.secure:
            channel = grpc.secure_channel(
                channel_target(self.target), self._credentials(), self.options
            )
        else:
            channel = grpc.insecure_channel(channel_target(self.target), options=self.options)
        if self.token:
            return grpc.intercept_channel(channel, _Token(self.metadata()))
        return channel

    def aio_channel(self) -> grpc.aio.Channel:
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.connections > 1:
            return PooledAioChannel([self._one_aio_channel() for _ in range(self.connections)])
        return self._one_aio_channel()

    def _one_aio_channel(self) -> grpc.aio.Channel:
        metadata = self.metadata()
        interceptors = [
            _AioUnaryUnary(metadata),
            _AioUnaryStream(metadata),
            _AioStreamUnary(metadata),
            _AioStreamStream(metadata),
        ]
        chosen: Any = interceptors if self.token else None
        if self.secure:
            return grpc.aio.secure_channel(
                channel_target(self.target),
                self._credentials(),
                self.options,
                interceptors=chosen,
            )
        return grpc.aio.insecure_channel(
            channel_target(self.target), options=self.options, interceptors=chosen
        )


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: Any, metadata: Sequence[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = (*(base.metadata or ()), *metadata)
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


class _Token(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the token to every call of a blocking channel."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = metadata

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_Details(details, self._metadata), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_Details(details, self._metadata), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(_Details(details, self._metadata), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(_Details(details, self._metadata), requests)


def _aio_details(details: Any, metadata: Sequence[tuple[str, str]]) -> Any:
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*(details.metadata or ()), *metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_aio_details(details, self._metadata), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = metadata

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_aio_details(details, self._metadata), request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = metadata

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_aio_details(details, self._metadata), requests)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = metadata

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_aio_details(details, self._metadata), requests)
