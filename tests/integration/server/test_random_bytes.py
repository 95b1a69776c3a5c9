"""Property: whatever bytes arrive as an image, the answer is OK or INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelwire.api.compat import image_classifier_pb2 as pb
from modelwire.api.compat import image_classifier_pb2_grpc as pb_grpc
from tests.conftest import ServeProcess
from tests.images import digit_bytes

SEEDS = [digit_bytes(d, fmt) for d, fmt in enumerate(["JPEG", "PNG", "BMP", "GIF", "WEBP"])]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[position:]
        if not data:
            break
    return bytes(data)


@pytest.fixture(scope="module")
def stub(serve_process: ServeProcess) -> Iterator[pb_grpc.ImageClassifierStub]:
    with grpc.insecure_channel(serve_process.target) as channel:
        yield pb_grpc.ImageClassifierStub(channel)


def _outcome(stub: pb_grpc.ImageClassifierStub, data: bytes) -> grpc.StatusCode:
    try:
        reply = stub.ClassifyImage(pb.Image(data=data), timeout=30)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    assert reply.label in "0123456789"
    assert 0 < reply.score <= 1
    return grpc.StatusCode.OK


ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=4096))
def test_random_bytes(stub: pb_grpc.ImageClassifierStub, data: bytes) -> None:
    assert _outcome(stub, data) in ALLOWED


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated_images())
def test_mutated_images(stub: pb_grpc.ImageClassifierStub, data: bytes) -> None:
    assert _outcome(stub, data) in ALLOWED


def test_server_still_serves_after_fuzzing(stub: pb_grpc.ImageClassifierStub) -> None:
    assert stub.ClassifyImage(pb.Image(data=digit_bytes(4)), timeout=30).label == "4"
