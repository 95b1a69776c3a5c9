"""The Open Inference Protocol over gRPC: tritonclient, unchanged, against modelwire serve;
and the protocol's edge cases with modelwire's own generated stubs."""

from __future__ import annotations

import struct
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.conftest import ServeProcess, ServerFactory
from tests.images import digit_bytes
from tests.integration.triton import (
    check_errors,
    check_health_and_metadata,
    check_inference,
    check_repository,
    run_checks,
)
from tests.models import add_model

ROOT = Path(__file__).resolve().parents[3]
INVALID = "StatusCode.INVALID_ARGUMENT"


@pytest.fixture(scope="module")
def triton_results(serve_process: ServeProcess) -> dict[str, object]:
    return run_checks("grpc", serve_process.target)


def test_liveness_readiness_and_metadata(triton_results: dict[str, object]) -> None:
    check_health_and_metadata(triton_results)


def test_bytes_images_classification_and_fp32(triton_results: dict[str, object]) -> None:
    check_inference(triton_results)
    assert triton_results["typed_equal"] is True


def test_stream_infer_answers_every_request(triton_results: dict[str, object]) -> None:
    stream = triton_results["stream"]
    assert isinstance(stream, list)
    assert [answer[0] for answer in stream] == [f"frame-{i}" for i in range(4)] + ["error"]
    assert all(answer[1].endswith(":7:7") for answer in stream[:4])
    assert stream[4][1] == "data is not a JPEG, PNG, BMP, GIF or WebP image"


def test_repository_extension(triton_results: dict[str, object]) -> None:
    check_repository(triton_results)


def test_errors_reach_tritonclient_with_their_codes(triton_results: dict[str, object]) -> None:
    check_errors(triton_results, INVALID, "StatusCode.NOT_FOUND")


def infer_request(**fields: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="digits", **fields)  # type: ignore[arg-type]
    return request


@pytest.mark.parametrize(
    ("request_", "details"),
    [
        (infer_request(), "exactly one input"),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP32", shape=[1, 1, 8, 8]
                    )
                ],
                raw_input_contents=[b"\x00" * 10],
            ),
            "needs 256 bytes of FP32, got 10",
        ),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(name="input", datatype="BYTES", shape=[2])
                ],
                raw_input_contents=[struct.pack("<I", 50) + b"short"],
            ),
            "runs past the raw contents",
        ),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(name="input", datatype="BYTES", shape=[2])
                ],
                raw_input_contents=[struct.pack("<I", 1) + b"x"],
            ),
            "shape says 2 elements, got 1",
        ),
        (infer_request(model_version="one"), "model_version must be a positive number"),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP32", shape=[1, 1, 8, 8]
                    )
                ],
                raw_input_contents=[np.zeros(64, np.float32).tobytes()],
                outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="probs")],
            ),
            "unknown output 'probs'",
        ),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP32", shape=[2**62, 1, 8, 8]
                    )
                ],
                raw_input_contents=[b""],
            ),
            "needs 1180591620717411303424 bytes of FP32, got 0",
        ),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP32", shape=[2**58 + 1, 1, 8, 8]
                    )
                ],
                raw_input_contents=[b"\x00" * 256],
            ),
            "got 256",
        ),
        (infer_request(model_version="\u00b2"), "model_version must be a positive number"),
        (infer_request(model_version="\u00b9"), "model_version must be a positive number"),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input",
                        datatype="FP32",
                        shape=[1, 1, 8, 8],
                        contents=pb.InferTensorContents(fp32_contents=[0.0] * 64),
                    )
                ],
                raw_input_contents=[np.zeros(64, np.float32).tobytes()],
            ),
            "both typed contents and raw_input_contents",
        ),
        (
            infer_request(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP32", shape=[1, 1, 8, 8]
                    )
                ],
                raw_input_contents=[np.zeros(64, np.float32).tobytes()] * 2,
            ),
            "raw_input_contents has 2 entries for 1 inputs",
        ),
    ],
    ids=[
        "no-input",
        "raw-length",
        "bytes-overrun",
        "bytes-count",
        "version",
        "output-name",
        "shape-overflow-empty",
        "shape-overflow-wraps",
        "version-superscript-two",
        "version-superscript-one",
        "typed-and-raw",
        "two-raw-for-one-input",
    ],
)
async def test_malformed_requests_are_invalid_argument(
    channel: grpc.aio.Channel, request_: pb.ModelInferRequest, details: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details in (caught.value.details() or "")


async def test_typed_bytes_contents_and_unloaded_models(start_server: ServerFactory) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="BYTES", shape=[2])
        tensor.contents.bytes_contents.extend([digit_bytes(2), digit_bytes(3)])
        reply = await stub.ModelInfer(infer_request(inputs=[tensor], id="req-1"))
        assert (reply.model_name, reply.model_version, reply.id) == ("digits", "1", "req-1")
        probabilities = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(2, 10)
        assert list(probabilities.argmax(axis=1)) == [2, 3]
        await server.engine.models.unload("digits")
        assert not (await stub.ModelReady(pb.ModelReadyRequest(name="digits"))).ready
        assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelReady(pb.ModelReadyRequest(name="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_repository_index_lists_failed_and_unloaded_models(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    (add_model(tmp_path, "broken") / "model.toml").write_text("nonsense = ")
    add_model(tmp_path, "spare")
    server = await start_server(model_repositories=[tmp_path])
    await server.engine.models.unload("spare")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        index = await stub.RepositoryIndex(pb.RepositoryIndexRequest())
        ready = await stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="broken"))
    listed = {(m.name, m.version, m.state) for m in index.models}
    assert listed == {
        ("broken", "", "UNAVAILABLE"),
        ("digits", "1", "READY"),
        ("spare", "", "UNAVAILABLE"),
    }
    assert {m.name for m in ready.models} == {"digits"}
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid TOML" in (caught.value.details() or "")


@pytest.mark.parametrize("version", ["\u00b2", "\u00b9", "\u0663", "0"])
async def test_versions_that_are_not_ascii_numbers(channel: grpc.aio.Channel, version: str) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    calls = [
        stub.ModelReady(pb.ModelReadyRequest(name="digits", version=version)),
        stub.ModelMetadata(pb.ModelMetadataRequest(name="digits", version=version)),
        stub.ModelInfer(infer_request(model_version=version)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model_version must be a positive number" in (caught.value.details() or "")
