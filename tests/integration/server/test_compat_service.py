"""The source document's ImageClassifier service on a real server."""

from __future__ import annotations

import grpc
import pytest
from PIL import Image

from modelwire import assembly
from modelwire.api.compat import image_classifier_pb2 as pb
from modelwire.api.compat import image_classifier_pb2_grpc as pb_grpc
from modelwire.assembly import RunningServer
from modelwire.settings import load_settings
from tests.images import digit_bytes, encode, png_header_claiming


@pytest.mark.parametrize("label", range(10))
async def test_classifies_a_digit_of_each_class(channel: grpc.aio.Channel, label: int) -> None:
    stub = pb_grpc.ImageClassifierStub(channel)
    reply = await stub.ClassifyImage(pb.Image(data=digit_bytes(label, "JPEG")))
    assert reply.label == str(label)
    assert 0 < reply.score <= 1


async def test_dark_ink_on_light_paper_classifies_too(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.ImageClassifierStub(channel)
    for label in range(10):
        reply = await stub.ClassifyImage(pb.Image(data=digit_bytes(label, dark_on_light=True)))
        assert reply.label == str(label)


@pytest.mark.parametrize(
    ("data", "details"),
    [
        (b"", "empty"),
        (b"GIF89a but nothing else", "not a JPEG, PNG, BMP, GIF or WebP image"),
        (b"\x00" * 1000, "not a JPEG, PNG, BMP, GIF or WebP image"),
        (digit_bytes(4, "JPEG")[:-300], "truncated or corrupt"),
        (digit_bytes(4, "PNG")[:200], "truncated or corrupt"),
        (encode(Image.new("RGB", (4, 30)), "PNG"), "smallest accepted is 8x8"),
        (png_header_claiming(50_000, 50_000), "2,500,000,000 pixels"),
    ],
    ids=["empty", "gif-header-only", "zeros", "truncated-jpeg", "truncated-png", "4x30", "bomb"],
)
async def test_bad_images_are_invalid_argument(
    channel: grpc.aio.Channel, data: bytes, details: str
) -> None:
    stub = pb_grpc.ImageClassifierStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ClassifyImage(pb.Image(data=data))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details in (caught.value.details() or "")
    assert "Traceback" not in (caught.value.details() or "")
    # ... and the server keeps serving.
    reply = await stub.ClassifyImage(pb.Image(data=digit_bytes(2)))
    assert reply.label == "2"


async def test_message_over_the_default_limit_is_resource_exhausted(
    channel: grpc.aio.Channel,
) -> None:
    stub = pb_grpc.ImageClassifierStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ClassifyImage(pb.Image(data=b"\xff" * (16 * 1024 * 1024 + 1)))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reply = await stub.ClassifyImage(pb.Image(data=digit_bytes(5)))
    assert reply.label == "5"


async def test_message_limit_is_configurable() -> None:
    settings = load_settings(hosts=["127.0.0.1"], port=0, max_message_bytes=4096)
    running = await assembly.start_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ImageClassifierStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ClassifyImage(pb.Image(data=b"\x00" * 5000))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await stub.ClassifyImage(pb.Image(data=digit_bytes(6)))).label == "6"
    finally:
        await running.stop(None)


async def test_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary(
        "/ImageClassifier/ClassifyVideo",
        request_serializer=pb.Image.SerializeToString,
        response_deserializer=pb.ClassificationResult.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(pb.Image(data=b"x"))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_method_path_is_the_documents(server: RunningServer) -> None:
    # No package in the .proto: the wire path is exactly /ImageClassifier/ClassifyImage.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            "/ImageClassifier/ClassifyImage",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.ClassificationResult.FromString,
        )
        # Field 1, wire type 2 (bytes): the document's Image message, encoded by hand.
        data = digit_bytes(8)
        raw = b"\x0a" + _varint(len(data)) + data
        reply = await call(raw)
    assert reply.label == "8"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
