"""Runs tritonclient (unchanged), over gRPC or HTTP, against a modelwire server and prints
what it got, as JSON.

Run as a separate process by `tests.integration.triton.run_checks`: tritonclient.grpc
registers its own generated `inference` protos, which cannot share a process with
modelwire's, and tritonclient.http runs on gevent.

    python tritonclient_checks.py grpc|http HOST:PORT IMAGE
"""

from __future__ import annotations

import importlib
import json
import queue
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException


def main() -> None:
    protocol, target, image_path = sys.argv[1], sys.argv[2], sys.argv[3]
    triton = importlib.import_module(f"tritonclient.{protocol}")
    image = open(image_path, "rb").read()  # noqa: SIM115
    client = triton.InferenceServerClient(target)
    out: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("digits"),
        "model_ready_v1": client.is_model_ready("digits", "1"),
        "server": _as_dict(client.get_server_metadata(), protocol),
        "metadata": _as_dict(client.get_model_metadata("digits"), protocol),
    }

    # BYTES: encoded images, decoded on the server; classification extension.
    images = _bytes(triton, [image, image])
    result = client.infer(
        "digits", [images], outputs=[triton.InferRequestedOutput("logits", class_count=3)]
    )
    out["classes"] = [[e.decode() for e in row] for row in result.as_numpy("logits")]

    # FP32 raw (binary): the preprocessed tensor.
    tensor = np.zeros((3, 1, 8, 8), np.float32)
    tensor[:, 0, :, 3:5] = 1.0  # a vertical stroke: a "1"
    probabilities = client.infer("digits", [_fp32(triton, tensor)]).as_numpy("logits")
    out["fp32_shape"] = list(probabilities.shape)
    out["fp32_sums"] = [float(s) for s in probabilities.sum(axis=1)]
    out["fp32_top"] = [int(i) for i in probabilities.argmax(axis=1)]
    if protocol == "grpc":
        _grpc_only(triton, client, tensor, probabilities, images, out)
    else:
        _http_only(triton, client, tensor, probabilities, out)

    # The repository extension.
    index = client.get_model_repository_index()
    if protocol == "grpc":
        index = [{"name": m.name, "version": m.version, "state": m.state} for m in index.models]
    out["index"] = [[m["name"], m["version"], m["state"]] for m in index]
    client.unload_model("digits")
    out["ready_after_unload"] = client.is_model_ready("digits")
    client.load_model("digits")
    out["ready_after_load"] = client.is_model_ready("digits")

    errors: dict[str, list[str]] = {}
    calls: dict[str, Callable[[], object]] = {
        "unknown_model": lambda: client.infer("nope", [_fp32(triton, tensor)]),
        "wrong_shape": lambda: client.infer(
            "digits", [_fp32(triton, np.zeros((1, 1, 8, 9), np.float32))]
        ),
        "wrong_name": lambda: client.infer("digits", [_fp32(triton, tensor, name="pixels")]),
        "wrong_datatype": lambda: client.infer("digits", [_int32(triton, tensor)]),
        "bad_image": lambda: client.infer("digits", [_bytes(triton, [b"not an image"])]),
        "load_unknown": lambda: client.load_model("nope"),
    }
    for label, call in calls.items():
        try:
            call()
        except InferenceServerException as error:
            errors[label] = [str(error.status()), error.message()]
        else:
            errors[label] = ["OK", ""]
    out["errors"] = errors
    print(json.dumps(out))


def _grpc_only(
    triton: ModuleType,
    client: Any,
    tensor: np.ndarray,
    probabilities: np.ndarray,
    images: Any,
    out: dict[str, object],
) -> None:
    # FP32 typed contents gives the same answer. tritonclient always sends FP32 as raw
    # bytes; rewrite this one as typed contents.
    typed = _fp32(triton, tensor)
    typed._input.ClearField("contents")
    typed._input.contents.fp32_contents.extend(tensor.ravel().tolist())
    typed._raw_content = None
    same = client.infer("digits", [typed]).as_numpy("logits")
    out["typed_equal"] = bool(np.allclose(same, probabilities))

    # Streaming: answers come back through the callback, one per request id.
    answers: queue.Queue[tuple[str, str]] = queue.Queue()

    def collect(result: Any, error: InferenceServerException | None) -> None:
        if error is not None:
            answers.put(("error", error.message()))
        else:
            top = result.as_numpy("logits")[0][0].decode()
            answers.put((result.get_response().id, top))

    client.start_stream(callback=collect)
    for i in range(4):
        client.async_stream_infer(
            "digits",
            [images],
            request_id=f"frame-{i}",
            outputs=[triton.InferRequestedOutput("logits", class_count=1)],
        )
    client.async_stream_infer("digits", [_bytes(triton, [b"junk"])], request_id="frame-bad")
    out["stream"] = [answers.get(timeout=60) for _ in range(5)]
    client.stop_stream()


def _http_only(
    triton: ModuleType,
    client: Any,
    tensor: np.ndarray,
    probabilities: np.ndarray,
    out: dict[str, object],
) -> None:
    # FP32 as JSON in and out gives the same numbers.
    as_json = triton.InferInput("input", list(tensor.shape), "FP32")
    as_json.set_data_from_numpy(tensor, binary_data=False)
    same = client.infer(
        "digits",
        [as_json],
        outputs=[triton.InferRequestedOutput("logits", binary_data=False)],
        request_id="json-1",
    )
    out["json_equal"] = bool(np.allclose(same.as_numpy("logits"), probabilities))
    out["json_id"] = same.get_response()["id"]
    # Compressed request and response bodies.
    compressed = client.infer(
        "digits",
        [_fp32(triton, tensor)],
        request_compression_algorithm="gzip",
        response_compression_algorithm="gzip",
    )
    out["gzip_equal"] = bool(np.allclose(compressed.as_numpy("logits"), probabilities))


def _as_dict(answer: Any, protocol: str) -> dict[str, Any]:
    """Metadata as the HTTP client gives it: the gRPC message as JSON, shapes as numbers."""
    if protocol == "http":
        return dict(answer)
    from google.protobuf import json_format

    as_json: dict[str, Any] = json_format.MessageToDict(answer, preserving_proto_field_name=True)
    for tensor in as_json.get("inputs", []) + as_json.get("outputs", []):
        tensor["shape"] = [int(d) for d in tensor["shape"]]
    return as_json


def _fp32(triton: ModuleType, tensor: np.ndarray, name: str = "input") -> Any:
    value = triton.InferInput(name, list(tensor.shape), "FP32")
    value.set_data_from_numpy(tensor)
    return value


def _int32(triton: ModuleType, tensor: np.ndarray) -> Any:
    value = triton.InferInput("input", list(tensor.shape), "INT32")
    value.set_data_from_numpy(tensor.astype(np.int32))
    return value


def _bytes(triton: ModuleType, elements: list[bytes]) -> Any:
    value = triton.InferInput("input", [len(elements)], "BYTES")
    value.set_data_from_numpy(np.array(elements, dtype=np.object_))
    return value


if __name__ == "__main__":
    main()
