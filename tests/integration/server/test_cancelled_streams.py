"""Streams that clients cancel mid-flight, against `modelwire serve` in its own process
(a crash there fails these tests instead of the test run).

grpc may free what a call's context points to once the call is over, and a streaming
handler's `finally` can run after that: reading the context then crashed the server
(SIGSEGV in `context.peer()`). Many cancelled streams at once must leave it serving,
with one access-log line per call.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.images import digit_bytes
from tests.waiting import wait_until

STREAM = "/modelwire.api.v1.InferenceService/ClassifyStream"


@pytest.fixture
def serve() -> Iterator[ServeProcess]:
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--threads", "2")
    yield serve
    assert stop_serve(serve) == 0, "".join(serve.log[-40:])


def logged_streams(serve: ServeProcess, code: str = "") -> int:
    return sum(STREAM in line and code in line for line in list(serve.log))


async def test_cancelled_streams_leave_the_server_serving(serve: ServeProcess) -> None:
    image = digit_bytes(3)
    messages = [
        pb.ClassifyStreamRequest(id=str(i), request=pb.ClassifyRequest(image=image))
        for i in range(10_000)
    ]
    streams = 0
    for _ in range(3):
        async with grpc.aio.insecure_channel(serve.target) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            # One long stream, read once (the server is working through it), then dropped.
            call = stub.ClassifyStream(iter(messages))
            assert (await call.read()).response.classes
            call.cancel()
            # Many short ones dropped at once, some before the server has read anything.
            short = [stub.ClassifyStream(iter(messages[:1])) for _ in range(60)]
            for each in short:
                each.cancel()
            streams += 61
        async with grpc.aio.insecure_channel(serve.target) as channel:
            reply = await pb_grpc.InferenceServiceStub(channel).Classify(
                pb.ClassifyRequest(image=image), timeout=30
            )
            assert reply.classes[0].label == "3"
        assert serve.process.poll() is None, "".join(serve.log[-40:])
    # The calls ended in the server's books as CANCELLED: the long ones at least (some
    # short ones never reached it).
    await wait_until(lambda: logged_streams(serve) >= 3, timeout=30)
    assert logged_streams(serve) == logged_streams(serve, " CANCELLED "), "".join(
        line for line in serve.log if STREAM in line and " CANCELLED " not in line
    )
    assert logged_streams(serve) <= streams
