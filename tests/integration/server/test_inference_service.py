"""modelwire.api.v1.InferenceService on real servers: Classify and ClassifyStream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.images import digit_bytes, noise_picture
from tests.models import add_model
from tests.waiting import wait_for_quiet, wait_until

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def request(label: int = 3, **fields: object) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(image=digit_bytes(label), **fields)  # type: ignore[arg-type]


@pytest.fixture
def big_image() -> bytes:
    return noise_picture()


async def test_classify_defaults_and_explicit_model(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    add_model(tmp_path, "other", (1, 2), tables="[version_policy]\nall = true\n")
    server = await start_server(model_repositories=[tmp_path])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        reply = await stub.Classify(request(3))
        assert (reply.model, reply.version) == ("digits", 1)
        assert [(c.label, c.index) for c in reply.classes] == [("3", 3)]
        reply = await stub.Classify(request(3, model="other", version=1, top_k=3))
        assert (reply.model, reply.version) == ("other", 1)
        assert reply.classes[0].label == "3"
        assert len(reply.classes) == 3
        assert reply.classes[0].score >= reply.classes[1].score >= reply.classes[2].score
        reply = await stub.Classify(request(3, model="other", top_k=999))
        assert reply.version == 2
        assert len(reply.classes) == 10


@pytest.mark.parametrize(
    ("fields", "code", "details"),
    [
        ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "model 'nope' is not served here"),
        ({"model": "../digits"}, grpc.StatusCode.INVALID_ARGUMENT, "is not allowed"),
        ({"model": "a/b"}, grpc.StatusCode.INVALID_ARGUMENT, "is not allowed"),
        ({"version": 7}, grpc.StatusCode.NOT_FOUND, "has no version 7; versions: 1"),
        ({"top_k": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "top_k must be between 1 and"),
        ({"image": b"\x89PNG\r\n\x1a\n"}, grpc.StatusCode.INVALID_ARGUMENT, "not a JPEG"),
    ],
    ids=["unknown-model", "traversal", "slash", "unknown-version", "top-k", "bad-image"],
)
async def test_classify_errors(
    channel: grpc.aio.Channel, fields: dict[str, object], code: grpc.StatusCode, details: str
) -> None:
    stub = pb_grpc.InferenceServiceStub(channel)
    message = request(1)
    for key, value in fields.items():
        setattr(message, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Classify(message)
    assert caught.value.code() == code
    assert details in (caught.value.details() or "")


async def test_bad_image_carries_a_bad_request_detail(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.InferenceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Classify(pb.ClassifyRequest(image=b"nope"))
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    kinds = {detail.type_url.rsplit(".", 1)[-1] for detail in status.details}
    assert kinds == {"ErrorInfo", "BadRequest"}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            assert bad.field_violations[0].field == "image"


async def test_full_queue_is_resource_exhausted_with_retry_info(
    start_server: ServerFactory, tmp_path: Path, big_image: bytes
) -> None:
    add_model(tmp_path, "tiny-queue", tables="[batching]\nmax_batch_size = 1\nmax_queue_size = 2\n")
    server = await start_server(model_repositories=[tmp_path])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        calls = [
            stub.Classify(pb.ClassifyRequest(model="tiny-queue", image=big_image))
            for _ in range(12)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    answered = [o for o in outcomes if isinstance(o, pb.ClassifyResponse)]
    assert answered  # the first ones are served...
    assert refused  # ... the rest are refused at once, not left to time out
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "the limit is 2" in (error.details() or "")
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


async def test_expired_requests_are_dropped_not_computed(
    start_server: ServerFactory, tmp_path: Path, big_image: bytes
) -> None:
    add_model(tmp_path, "slow", tables="[batching]\nmax_batch_size = 1\n")
    server = await start_server(model_repositories=[tmp_path])
    batcher = server.engine.models.resolve("slow").batcher
    assert batcher is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        busy = [stub.Classify(pb.ClassifyRequest(model="slow", image=big_image)) for _ in range(3)]
        await wait_until(lambda: batcher.queue_depth >= 1)  # one running, one queued
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Classify(request(1, model="slow"), timeout=0.05)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.gather(*busy)
        # The server stays healthy, and the expired request was skipped, never computed.
        assert (await stub.Classify(request(1, model="slow"))).classes[0].label == "1"
    assert batcher.stats.dropped >= 1


def stream_message(
    key: str, label: int | None = None, image: bytes | None = None
) -> pb.ClassifyStreamRequest:
    data = image if image is not None else digit_bytes(label if label is not None else 0)
    return pb.ClassifyStreamRequest(id=key, request=pb.ClassifyRequest(image=data))


async def test_stream_answers_every_id_in_order_with_errors_inline(
    channel: grpc.aio.Channel,
) -> None:
    stub = pb_grpc.InferenceServiceStub(channel)
    messages = [stream_message(f"frame-{i}", i % 10) for i in range(40)]
    messages[7] = stream_message("frame-7", image=b"not an image")
    messages[20] = pb.ClassifyStreamRequest(
        id="frame-20", request=pb.ClassifyRequest(model="nope", image=digit_bytes(0))
    )
    replies = [reply async for reply in stub.ClassifyStream(iter(messages))]
    assert [r.id for r in replies] == [m.id for m in messages]
    for i, reply in enumerate(replies):
        if i == 7:
            assert reply.error.code == INVALID
            assert "not a JPEG" in reply.error.message
        elif i == 20:
            assert reply.error.code == grpc.StatusCode.NOT_FOUND.value[0]
        else:
            assert reply.response.classes[0].label == str(i % 10)


async def test_stream_half_close_finishes_the_outstanding_answers(
    channel: grpc.aio.Channel,
) -> None:
    stub = pb_grpc.InferenceServiceStub(channel)
    call = stub.ClassifyStream()
    for i in range(10):
        await call.write(stream_message(str(i), i))
    await call.done_writing()
    ids = []
    while (reply := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        ids.append(reply.id)
    assert ids == [str(i) for i in range(10)]
    assert await call.code() == grpc.StatusCode.OK


async def test_stream_cancelled_mid_way_leaves_the_server_clean(
    start_server: ServerFactory, big_image: bytes
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        call = stub.ClassifyStream()
        await call.write(stream_message("0", 0))
        assert (await call.read()).id == "0"
        for i in range(1, 5):
            await call.write(stream_message(str(i), image=big_image))
        call.cancel()
        assert await call.code() == grpc.StatusCode.CANCELLED
        await wait_until(lambda: server.engine.in_flight == 0)
        reply = await pb_grpc.InferenceServiceStub(channel).Classify(request(2))
        assert reply.classes[0].label == "2"


async def test_stream_window_bounds_the_work_in_flight(start_server: ServerFactory) -> None:
    server = await start_server(stream_window=3)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.engine.in_flight)
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        messages = [stream_message(str(i), i % 10) for i in range(60)]
        replies = [reply async for reply in stub.ClassifyStream(iter(messages))]
    watcher.cancel()
    assert [r.id for r in replies] == [str(i) for i in range(60)]
    assert 1 <= peak <= 3


async def test_stream_messages_share_batches(start_server: ServerFactory, tmp_path: Path) -> None:
    add_model(tmp_path, "m", tables="[batching]\nmax_batch_size = 16\nmax_queue_delay_ms = 20\n")
    server = await start_server(model_repositories=[tmp_path], stream_window=16)
    batcher = server.engine.models.resolve("m").batcher
    assert batcher is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        messages = [
            pb.ClassifyStreamRequest(
                id=str(i), request=pb.ClassifyRequest(model="m", image=digit_bytes(i % 10))
            )
            for i in range(64)
        ]
        replies = [reply async for reply in stub.ClassifyStream(iter(messages))]
    assert len(replies) == 64
    assert batcher.stats.items == 64
    assert batcher.stats.batches < 64
    assert max(batcher.stats.sizes) > 1
    assert max(batcher.stats.sizes) <= 16


async def test_compat_service_uses_the_default_model_of_the_engine(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    from modelwire.api.compat import image_classifier_pb2 as compat
    from modelwire.api.compat import image_classifier_pb2_grpc as compat_grpc

    add_model(tmp_path, "mine")
    server = await start_server(model_repositories=[tmp_path], default_model="mine")
    batcher = server.engine.models.resolve("mine").batcher
    assert batcher is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await compat_grpc.ImageClassifierStub(channel).ClassifyImage(
            compat.Image(data=digit_bytes(9))
        )
    assert reply.label == "9"
    assert batcher.stats.items == 1


async def test_stream_backpressure_when_the_client_does_not_read(
    start_server: ServerFactory,
) -> None:
    """A client that sends but does not read makes the server stop taking messages once
    its answers fill the client's HTTP/2 window; nothing piles up without bound."""
    server = await start_server(stream_window=2)
    batcher = server.engine.models.resolve("digits").batcher
    assert batcher is not None
    total = 5000
    # No BDP probing: the client's receive window stays at its 64 KiB start.
    options = [("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        call = pb_grpc.InferenceServiceStub(channel).ClassifyStream()
        message = stream_message("", 4)

        async def write_all() -> None:
            for i in range(total):
                message.id = str(i)
                await call.write(message)
            await call.done_writing()

        writing = asyncio.ensure_future(write_all())
        await wait_until(lambda: batcher.stats.items > 0)
        processed = await wait_for_quiet(lambda: batcher.stats.items)
        assert 0 < processed < total
        assert not writing.done()
        ids = []
        while (reply := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            ids.append(reply.id)
        await writing
    assert ids == [str(i) for i in range(total)]
