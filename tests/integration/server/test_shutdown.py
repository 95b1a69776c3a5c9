"""Graceful shutdown: NOT_SERVING, new calls refused, calls in flight finish."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from modelwire import assembly
from modelwire.api.compat import image_classifier_pb2 as pb
from modelwire.api.compat import image_classifier_pb2_grpc as pb_grpc
from modelwire.settings import load_settings
from tests.conftest import start_serve, stop_serve
from tests.images import digit_bytes, encode
from tests.waiting import wait_until


async def test_call_in_flight_finishes_and_new_calls_are_refused(tmp_path: Path) -> None:
    running = await assembly.start_server(
        load_settings(hosts=["127.0.0.1"], port=0, rest_port="off", threads=1, data_dir=tmp_path)
    )
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


async def test_calls_racing_a_stop_are_answered_or_refused_unavailable(tmp_path: Path) -> None:
    """Over many stops under 32 concurrent callers, every call either completes or is
    refused UNAVAILABLE (which clients retry elsewhere); none is CANCELLED."""
    codes: dict[str, int] = {}
    for round_ in range(30):
        await stop_under_load(codes, tmp_path / str(round_))
    assert set(codes) <= {"OK", "UNAVAILABLE", "UNAVAILABLE (refused by the drain)"}, codes
    assert codes["UNAVAILABLE (refused by the drain)"] > 0, codes


async def stop_under_load(codes: dict[str, int], data_dir: Path) -> None:
    """Start a server, keep 32 callers calling until each gets an error, stop it."""
    running = await assembly.start_server(
        load_settings(hosts=["127.0.0.1"], port=0, rest_port="off", threads=2, data_dir=data_dir)
    )
    image = pb.Image(data=digit_bytes(4))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.ImageClassifierStub(channel)

        async def caller() -> None:
            while True:
                try:
                    await stub.ClassifyImage(image, timeout=30)
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                    if "shutting down" in (error.details() or ""):
                        code += " (refused by the drain)"
                    codes[code] = codes.get(code, 0) + 1
                    return
                codes["OK"] = codes.get("OK", 0) + 1

        before = codes.get("OK", 0)
        callers = [asyncio.ensure_future(caller()) for _ in range(32)]
        await wait_until(lambda: codes.get("OK", 0) - before >= 64)
        await running.stop(grace=10)
        await asyncio.gather(*callers)
