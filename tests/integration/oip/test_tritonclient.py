"""The Open Inference Protocol over gRPC: tritonclient, unchanged, against modelwire serve;
and the protocol's edge cases with modelwire's own generated stubs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.conftest import ServeProcess, ServerFactory
from tests.images import digit_bytes
from tests.models import add_model

ROOT = Path(__file__).resolve().parents[3]
INVALID = "StatusCode.INVALID_ARGUMENT"


@pytest.fixture(scope="module")
def triton_results(serve_process: ServeProcess) -> dict[str, object]:
    # tritonclient's own `inference` protos cannot share a process with modelwire's.
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parent / "tritonclient_checks.py"),
            serve_process.target,
            str(ROOT / "examples/document_client/image.jpg"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def test_liveness_readiness_and_metadata(triton_results: dict[str, object]) -> None:
    assert triton_results["live"] is True
    assert triton_results["ready"] is True
    assert triton_results["model_ready"] is True
    assert triton_results["model_ready_v1"] is True
    assert triton_results["server"] == {
        "name": "modelwire",
        "version": triton_results["server"]["version"],  # type: ignore[index]
        "extensions": ["classification", "model_repository"],
    }
    assert triton_results["metadata"] == {
        "name": "digits",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": ["-1", "1", "8", "8"]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]}],
    }


def test_bytes_images_with_the_classification_extension(triton_results: dict[str, object]) -> None:
    classes = triton_results["classes"]
    assert isinstance(classes, list)
    assert len(classes) == 2
    for row in classes:
        score, index, label = row[0].split(":")
        assert (index, label) == ("7", "7")
        assert 0.9 < float(score) <= 1
        assert len(row) == 3


def test_fp32_tensors_raw_and_typed(triton_results: dict[str, object]) -> None:
    assert triton_results["fp32_shape"] == [3, 10]
    assert triton_results["fp32_sums"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert triton_results["fp32_top"] == [1, 1, 1]
    assert triton_results["typed_equal"] is True


def test_stream_infer_answers_every_request(triton_results: dict[str, object]) -> None:
    stream = triton_results["stream"]
    assert isinstance(stream, list)
    assert [answer[0] for answer in stream] == [f"frame-{i}" for i in range(4)] + ["error"]
    assert all(answer[1].endswith(":7:7") for answer in stream[:4])
    assert stream[4][1] == "data is not a JPEG, PNG, BMP, GIF or WebP image"


def test_repository_extension(triton_results: dict[str, object]) -> None:
    assert triton_results["index"] == [["digits", "1", "READY"]]
    assert triton_results["ready_after_unload"] is False
    assert triton_results["ready_after_load"] is True


def test_errors_reach_tritonclient_with_their_codes(triton_results: dict[str, object]) -> None:
    errors = triton_results["errors"]
    assert isinstance(errors, dict)
    assert errors["unknown_model"][0] == "StatusCode.NOT_FOUND"
    assert errors["wrong_shape"] == [
        INVALID,
        "input 'input': FP32 shape must be [N, 1, 8, 8], got [1, 1, 8, 9]",
    ]
    assert errors["wrong_name"] == [INVALID, "unknown input 'pixels': the model's input is 'input'"]
    assert errors["wrong_datatype"][0] == INVALID
    assert "datatype 'INT32' is not accepted" in errors["wrong_datatype"][1]
    assert errors["bad_image"] == [INVALID, "data is not a JPEG, PNG, BMP, GIF or WebP image"]
    assert errors["load_unknown"][0] == "StatusCode.NOT_FOUND"


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
    ],
    ids=["no-input", "raw-length", "bytes-overrun", "bytes-count", "version", "output-name"],
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
