"""The Open Inference Protocol over REST: JSON tensors, the binary tensor data extension,
classification and the repository extension, with its errors."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest

from modelwire.assembly import RunningServer
from tests.images import digit_bytes

HEADER = "Inference-Header-Content-Length"


def stroke(count: int) -> np.ndarray:
    """`count` preprocessed images of a vertical stroke: the digit 1."""
    tensor = np.zeros((count, 1, 8, 8), np.float32)
    tensor[:, 0, :, 3:5] = 1.0
    return tensor


async def expected(server: RunningServer, tensor: np.ndarray) -> np.ndarray:
    result = await server.engine.infer_tensors("digits", None, {"input": tensor})
    return result.outputs["logits"]


async def test_health_and_metadata(rest: tuple[RunningServer, httpx.AsyncClient]) -> None:
    server, http = rest
    assert (await http.get("/v2/health/live")).json() == {"live": True}
    assert (await http.get("/v2/health/ready")).status_code == 200
    assert (await http.get("/v2/models/digits/ready")).json() == {"ready": True}
    assert (await http.get("/v2/models/digits/versions/1/ready")).status_code == 200
    assert (await http.get("/v2/models/digits/versions/2/ready")).status_code == 404
    assert (await http.get("/v2/models/nope/ready")).status_code == 404
    server_metadata = (await http.get("/v2")).json()
    assert server_metadata["name"] == "modelwire"
    assert "binary_tensor_data" in server_metadata["extensions"]
    metadata = (await http.get("/v2/models/digits")).json()
    assert metadata == {
        "name": "digits",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert (await http.get("/v2/models/digits/versions/1")).json() == metadata

    await server.engine.models.unload("digits")
    assert (await http.get("/v2/health/ready")).status_code == 400
    assert (await http.get("/v2/models/digits/ready")).json() == {"ready": False}


async def test_json_fp32_tensor(rest: tuple[RunningServer, httpx.AsyncClient]) -> None:
    server, http = rest
    tensor = stroke(2)
    for data in (tensor.tolist(), tensor.ravel().tolist()):  # nested or flat
        response = await http.post(
            "/v2/models/digits/infer",
            json={
                "id": "req-1",
                "inputs": [
                    {"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": data}
                ],
            },
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_name"] == "digits"
        assert answer["model_version"] == "1"
        assert answer["id"] == "req-1"
        [output] = answer["outputs"]
        assert output["name"] == "logits"
        assert output["datatype"] == "FP32"
        assert output["shape"] == [2, 10]
        values = np.array(output["data"], np.float32).reshape(2, 10)
        np.testing.assert_allclose(values, await expected(server, tensor), rtol=1e-6)
        assert values.argmax(axis=1).tolist() == [1, 1]


async def test_json_base64_images_with_classification(http: httpx.AsyncClient) -> None:
    images = [digit_bytes(4), digit_bytes(9, "JPEG")]
    response = await http.post(
        "/v2/models/digits/versions/1/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(i).decode() for i in images],
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"classification": 2}}],
        },
    )
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [2, 2]
    first, _, second, _ = output["data"]
    assert first.split(":")[1:] == ["4", "4"]
    assert second.split(":")[1:] == ["9", "9"]
    assert float(first.split(":")[0]) > 0.5


def binary_request(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return b"".join([text, *blobs]), {
        HEADER: str(len(text)),
        "content-type": "application/octet-stream",
    }


def read_binary_response(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers[HEADER])
    header: dict[str, Any] = json.loads(response.content[:length])
    return header, response.content[length:]


async def test_binary_tensor_data_in_and_out(rest: tuple[RunningServer, httpx.AsyncClient]) -> None:
    server, http = rest
    tensor = stroke(3)
    raw = tensor.astype("<f4").tobytes()
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [3, 1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        },
        raw,
    )
    response = await http.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    header, blob = read_binary_response(response)
    [output] = header["outputs"]
    assert output["shape"] == [3, 10]
    assert output["parameters"] == {"binary_data_size": 3 * 10 * 4}
    assert "data" not in output
    values = np.frombuffer(blob, "<f4").reshape(3, 10)
    np.testing.assert_allclose(values, await expected(server, tensor), rtol=1e-6)

    # Encoded images as a binary BYTES tensor; classification strings back in binary.
    images = [digit_bytes(2), digit_bytes(7)]
    packed = b"".join(struct.pack("<I", len(i)) + i for i in images)
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(packed)},
                }
            ],
            "outputs": [
                {"name": "logits", "parameters": {"classification": 1, "binary_data": True}}
            ],
        },
        packed,
    )
    response = await http.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    header, blob = read_binary_response(response)
    assert header["outputs"][0]["shape"] == [2, 1]
    elements, offset = [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        elements.append(blob[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    assert [e.split(":", 1)[1] for e in elements] == ["2:2", "7:7"]


def fp32_input(shape: list[int], **extra: Any) -> dict[str, Any]:
    return {"name": "input", "shape": shape, "datatype": "FP32", **extra}


ZEROS = [0.0] * 64


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"inputs": [fp32_input([1, 1, 8, 9], data=[0.0] * 72)]},
            400,
            "shape must be [N, 1, 8, 8]",
        ),
        ({"inputs": [fp32_input([1, 1, 8, 8], data=ZEROS[:10])]}, 400, "needs 64 FP32 values"),
        ({"inputs": [fp32_input([1, 1, 8, 8], data=["a"] * 64)]}, 400, "must be numbers"),
        (
            {"inputs": [{**fp32_input([1, 1, 8, 8], data=ZEROS), "name": "pixels"}]},
            400,
            "unknown input 'pixels'",
        ),
        (
            {"inputs": [{**fp32_input([1, 1, 8, 8], data=ZEROS), "datatype": "INT32"}]},
            400,
            "datatype 'INT32' is not accepted",
        ),
        ({"inputs": []}, 400, "exactly one input"),
        ({"inputs": [fp32_input([1, 1, 8, 8])]}, 400, "neither data nor"),
        ({"outputs": []}, 400, "inputs: Field required"),
        (
            {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["!!"]}]},
            400,
            "base64",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(b"junk").decode()],
                    }
                ]
            },
            400,
            "is not a JPEG",
        ),
        (
            {
                "inputs": [fp32_input([1, 1, 8, 8], data=ZEROS)],
                "outputs": [{"name": "scores"}],
            },
            400,
            "unknown output 'scores'",
        ),
        (
            {
                "inputs": [fp32_input([1, 1, 8, 8], data=ZEROS)],
                "outputs": [{"name": "logits", "parameters": {"classification": 0}}],
            },
            400,
            "at least 1",
        ),
        ({"inputs": [fp32_input([2**62, 1, 8, 8], data=[])]}, 400, "needs 295147905179352825856"),
        ({"inputs": [fp32_input([2**58 + 1, 1, 8, 8], data=ZEROS)]}, 400, "got 64"),
    ],
)
async def test_bad_inference_requests(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, message: str
) -> None:
    response = await http.post("/v2/models/digits/infer", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


async def test_bad_binary_requests(http: httpx.AsyncClient) -> None:
    raw = stroke(1).tobytes()
    header = {"inputs": [fp32_input([1, 1, 8, 8], parameters={"binary_data_size": len(raw)})]}
    cases: list[tuple[tuple[bytes, dict[str, Any]], str]] = [
        (binary_request(header, raw[:-4]), "runs past"),
        (binary_request(header, raw, b"extra"), "belong to no input"),
        ((b"{}", {HEADER: "99"}), "Inference-Header-Content-Length"),
        ((b"{}", {HEADER: "-1"}), "Inference-Header-Content-Length"),
        ((b"{}", {HEADER: "\u00b2".encode("latin-1")}), "Inference-Header-Content-Length"),
        (
            binary_request(
                {
                    "inputs": [
                        fp32_input(
                            [1, 1, 8, 8], data=ZEROS, parameters={"binary_data_size": len(raw)}
                        )
                    ]
                },
                raw,
            ),
            "both data and a binary_data_size",
        ),
    ]
    for (body, headers), message in cases:
        response = await http.post("/v2/models/digits/infer", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
    response = await http.post("/v2/models/nope/infer", content=b"{}")
    assert response.status_code == 404


@pytest.mark.parametrize("version", ["%C2%B2", "%C2%B9", "0", "-1", "1.0"])
async def test_versions_that_are_not_ascii_numbers(http: httpx.AsyncClient, version: str) -> None:
    for method, path in [
        ("POST", f"/v2/models/digits/versions/{version}/infer"),
        ("GET", f"/v2/models/digits/versions/{version}/ready"),
        ("GET", f"/v2/models/digits/versions/{version}"),
    ]:
        response = await http.request(method, path, content=b"{}")
        assert response.status_code == 400, (path, response.text)
        assert "model_version must be a positive number" in response.json()["error"]


async def test_repository_extension(rest: tuple[RunningServer, httpx.AsyncClient]) -> None:
    _, http = rest
    index = (await http.post("/v2/repository/index", json={})).json()
    assert index == [{"name": "digits", "version": "1", "state": "READY", "reason": ""}]
    assert (await http.post("/v2/repository/models/digits/unload")).status_code == 200
    assert (await http.get("/v2/models/digits/ready")).json() == {"ready": False}
    assert (await http.post("/v2/repository/index", json={"ready": True})).json() == []
    assert (await http.post("/v2/repository/models/digits/load")).status_code == 200
    assert (await http.get("/v2/models/digits/ready")).json() == {"ready": True}
    missing = await http.post("/v2/repository/models/nope/load")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]


async def test_big_json_bodies_are_parsed_off_the_event_loop(
    rest: tuple[RunningServer, httpx.AsyncClient],
) -> None:
    server, http = rest
    tensor = stroke(300)  # ~80 KB of JSON: parsed in a worker thread
    response = await http.post(
        "/v2/models/digits/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": [300, 1, 8, 8],
                    "datatype": "FP32",
                    "data": tensor.tolist(),
                }
            ]
        },
    )
    assert response.status_code == 200, response.text
    values = np.array(response.json()["outputs"][0]["data"], np.float32).reshape(300, 10)
    np.testing.assert_allclose(values, await expected(server, tensor), rtol=1e-6)
    bad = await http.post(
        "/v2/models/digits/infer",
        json={"inputs": [{"name": "input", "shape": [300, 1, 8, 9], "datatype": "FP32",
                          "data": tensor.ravel().tolist()}]},
    )  # fmt: skip
    assert bad.status_code == 400
    assert "shape must be" in bad.json()["error"]
