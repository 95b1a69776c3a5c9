"""The call guard on a bare grpc.aio server: every handler kind, registered or generic,
is counted, logged and refused alike; each is wrapped once, not once per call."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelwire.core.tokens import TokenStore, add_token
from modelwire.metrics import ServerMetrics
from modelwire.server.calls import CallGuard

SERVICE = "modelwire.api.v1.InferenceService"  # a service the role table knows: infer


async def _unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    if request == b"fail":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")
    return request[::-1]


async def _streams(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request.upper()


def _handlers() -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    return {
        "Classify": grpc.unary_unary_rpc_method_handler(_unary),
        "ClassifyStream": grpc.stream_stream_rpc_method_handler(_streams),
    }


def _count(metrics: ServerMetrics, method: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "modelwire_requests_total",
        {"protocol": "grpc", "service": SERVICE, "method": method, "code": code},
    )
    return value or 0.0


@pytest.mark.parametrize("registered", [True, False])
async def test_every_call_is_counted_and_logged(
    registered: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelwire.access")
    metrics = ServerMetrics()
    guard = CallGuard(None, metrics)
    server = grpc.aio.server()
    guard.install(server)
    if registered:
        server.add_registered_method_handlers(SERVICE, _handlers())  # type: ignore[attr-defined]
    else:
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, _handlers())]
        )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Classify", None, None)
            for _ in range(3):
                call = unary(b"abc", metadata=(("x-request-id", "id-1"),))
                assert await call == b"cba"
                assert ("x-request-id", "id-1") in tuple(await call.trailing_metadata())
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await unary(b"fail")
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            stream = channel.stream_stream(f"/{SERVICE}/ClassifyStream", None, None)(
                iter([b"a", b"b"])
            )
            assert [answer async for answer in stream] == [b"A", b"B"]
            echoed = dict(await stream.initial_metadata())
            assert len(echoed["x-request-id"]) == 16
    finally:
        await server.stop(None)
    assert _count(metrics, "Classify", "OK") == 3
    assert _count(metrics, "Classify", "INVALID_ARGUMENT") == 1
    assert _count(metrics, "ClassifyStream", "OK") == 1
    assert (
        metrics.registry.get_sample_value("modelwire_in_flight_requests", {"protocol": "grpc"}) == 0
    )
    lines = [r for r in caplog.records if r.name == "modelwire.access"]
    assert [getattr(r, "code", "") for r in lines] == ["OK"] * 3 + ["INVALID_ARGUMENT", "OK"]
    assert all(getattr(r, "peer", "") for r in lines)


async def test_refused_before_the_handler_runs(tmp_path: Path) -> None:
    ran: list[bytes] = []

    async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        ran.append(request)
        return request

    tokens_file = tmp_path / "tokens.toml"
    token = add_token(tokens_file, "trainer", ["train"])
    metrics = ServerMetrics()
    guard = CallGuard(TokenStore.load(tokens_file), metrics)
    server = grpc.aio.server()
    guard.install(server)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Classify": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Classify", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await unary(b"x")
            assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as lacking:
                await unary(b"x", metadata=(("authorization", f"Bearer {token}"),))
            assert lacking.value.code() == grpc.StatusCode.PERMISSION_DENIED
            guard.drain()
            with pytest.raises(grpc.aio.AioRpcError) as draining:
                await unary(b"x")
            assert draining.value.code() == grpc.StatusCode.UNAVAILABLE
            trailing: Any = draining.value.trailing_metadata() or ()
            assert "x-request-id" in dict(trailing)
    finally:
        await server.stop(None)
    assert ran == []
    for code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "UNAVAILABLE"):
        assert _count(metrics, "Classify", code) == 1
    in_flight = metrics.registry.get_sample_value(
        "modelwire_in_flight_requests", {"protocol": "grpc"}
    )
    assert in_flight == 0


def test_each_handler_is_wrapped_once() -> None:
    guard = CallGuard(None, None)
    wrapped: list[grpc.GenericRpcHandler[Any, Any]] = []

    class Recorder:
        def add_generic_rpc_handlers(self, handlers: list[Any]) -> None:
            wrapped.extend(handlers)

        def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
            pass

    recorder: Any = Recorder()
    guard.install(recorder)
    recorder.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, _handlers())])
    (generic,) = wrapped

    class Details(grpc.HandlerCallDetails):
        method = f"/{SERVICE}/Classify"
        invocation_metadata = ()

    first, second = generic.service(Details()), generic.service(Details())
    assert first is not None
    assert first is second
    behaviour: Any = first.unary_unary
    assert behaviour is not _unary
