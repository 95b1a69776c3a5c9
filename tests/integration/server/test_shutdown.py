"""Graceful shutdown: NOT_SERVING, new calls refused, calls in flight finish."""

from __future__ import annotations

import asyncio
import signal

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from modelwire.api.compat import image_classifier_pb2 as pb
from modelwire.api.compat import image_classifier_pb2_grpc as pb_grpc
from modelwire.server.app import build_server
from modelwire.settings import load_settings
from tests.conftest import start_serve, stop_serve
from tests.images import digit_bytes, encode
from tests.waiting import wait_until


async def test_call_in_flight_finishes_and_new_calls_are_refused() -> None:
    running = await build_server(load_settings(hosts=["127.0.0.1"], port=0, threads=1))
    # A large photo-sized image keeps one call busy decoding for a while.
    noise = np.random.default_rng(0).integers(0, 255, (3000, 3000), dtype=np.uint8)
    big = encode(Image.fromarray(noise), "PNG")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.ImageClassifierStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(stub.ClassifyImage(pb.Image(data=big)))
        await wait_until(lambda: running.engine.in_flight == 1)

        stopping = asyncio.ensure_future(running.stop(grace=30))
        update = await watch.read()
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # The watch stream ends by itself so it does not hold the drain open.
        while (await watch.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            pass
        assert await watch.code() == grpc.StatusCode.OK

        reply = await in_flight
        assert reply.label in "0123456789"
        await stopping
        assert running.engine.in_flight == 0

    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.ImageClassifierStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ClassifyImage(pb.Image(data=digit_bytes(1)), timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_and_exits_zero(sig: signal.Signals) -> None:
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--grace-period", "5")
    serve.process.send_signal(sig)
    code = stop_serve(serve)
    assert code == 0
    assert any("shutting down" in line for line in serve.log)
    assert any("stopped" in line for line in serve.log)


async def test_calls_racing_a_stop_are_answered_or_refused_unavailable() -> None:
    """Over many stops under 32 concurrent callers, every call either completes or is
    refused UNAVAILABLE (which clients retry elsewhere); none is CANCELLED."""
    codes: dict[str, int] = {}
    for _ in range(30):
        await stop_under_load(codes)
    assert set(codes) == {"OK", "UNAVAILABLE"}, codes


async def stop_under_load(codes: dict[str, int]) -> None:
    """Start a server, keep 32 callers calling until each gets an error, stop it."""
    running = await build_server(load_settings(hosts=["127.0.0.1"], port=0, threads=2))
    image = pb.Image(data=digit_bytes(4))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.ImageClassifierStub(channel)

        async def caller() -> None:
            while True:
                try:
                    await stub.ClassifyImage(image, timeout=30)
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] = codes.get(error.code().name, 0) + 1
                    return
                codes["OK"] = codes.get("OK", 0) + 1

        before = codes.get("OK", 0)
        callers = [asyncio.ensure_future(caller()) for _ in range(32)]
        await wait_until(lambda: codes.get("OK", 0) - before >= 64)
        await running.stop(grace=10)
        await asyncio.gather(*callers)
