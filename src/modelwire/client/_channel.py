"""Channels to a modelwire server: plaintext or TLS (optionally with a client certificate
for mutual TLS), and a bearer token sent with every call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = ["Connection"]

# The client does not cap sizes itself: the server's limit decides and says so.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

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

    target: str
    ca: PemInput | None = None
    cert: PemInput | None = None
    key: PemInput | None = None
    token: str | None = None
    tls: bool = False

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
        if self.secure:
            channel = grpc.secure_channel(self.target, self._credentials(), CHANNEL_OPTIONS)
        else:
            channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        if self.token:
            return grpc.intercept_channel(channel, _Token(self.metadata()))
        return channel

    def aio_channel(self) -> grpc.aio.Channel:
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
                self.target, self._credentials(), CHANNEL_OPTIONS, interceptors=chosen
            )
        return grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS, interceptors=chosen)


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
