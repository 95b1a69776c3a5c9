"""Runs tritonclient (unchanged) against a modelwire server and prints what it got, as JSON.

Run as a separate process by test_tritonclient.py: tritonclient registers its own
generated `inference` protos, which cannot share a process with modelwire's.

    python tritonclient_checks.py HOST:PORT IMAGE
"""

from __future__ import annotations

import json
import queue
import sys
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def main() -> None:
    target, image_path = sys.argv[1], sys.argv[2]
    image = open(image_path, "rb").read()  # noqa: SIM115
    client = triton.InferenceServerClient(target)
    out: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("digits"),
        "model_ready_v1": client.is_model_ready("digits", "1"),
        "server": client.get_server_metadata(as_json=True),
        "metadata": client.get_model_metadata("digits", as_json=True),
    }

    # BYTES: encoded images, decoded on the server; classification extension.
    images = triton.InferInput("input", [2], "BYTES")
    images.set_data_from_numpy(np.array([image, image], dtype=np.object_))
    result = client.infer(
        "digits", [images], outputs=[triton.InferRequestedOutput("logits", class_count=3)]
    )
    out["classes"] = [[e.decode() for e in row] for row in result.as_numpy("logits")]

    # FP32 raw: the preprocessed tensor.
    tensor = np.zeros((3, 1, 8, 8), np.float32)
    tensor[:, 0, :, 3:5] = 1.0  # a vertical stroke: a "1"
    raw = triton.InferInput("input", list(tensor.shape), "FP32")
    raw.set_data_from_numpy(tensor)
    probabilities = client.infer("digits", [raw]).as_numpy("logits")
    out["fp32_shape"] = list(probabilities.shape)
    out["fp32_sums"] = [float(s) for s in probabilities.sum(axis=1)]
    out["fp32_top"] = [int(i) for i in probabilities.argmax(axis=1)]

    # FP32 typed contents (binary_data off) gives the same answer.
    typed = triton.InferInput("input", list(tensor.shape), "FP32")
    typed.set_data_from_numpy(tensor)
    # tritonclient always sends FP32 as raw bytes; rewrite this one as typed contents.
    typed._input.ClearField("contents")
    typed._input.contents.fp32_contents.extend(tensor.ravel().tolist())
    typed._raw_content = None
    same = client.infer("digits", [typed]).as_numpy("logits")
    out["typed_equal"] = bool(np.allclose(same, probabilities))

    # Streaming: answers come back through the callback, one per request id.
    answers: queue.Queue[tuple[str, str]] = queue.Queue()

    def collect(result: triton.InferResult | None, error: InferenceServerException | None) -> None:
        if error is not None:
            answers.put(("error", error.message()))
        else:
            assert result is not None
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
    client.async_stream_infer("digits", [_bytes([b"junk"])], request_id="frame-bad")
    out["stream"] = [answers.get(timeout=60) for _ in range(5)]
    client.stop_stream()

    # The repository extension.
    out["index"] = [
        [m.name, m.version, m.state] for m in client.get_model_repository_index().models
    ]
    client.unload_model("digits")
    out["ready_after_unload"] = client.is_model_ready("digits")
    client.load_model("digits")
    out["ready_after_load"] = client.is_model_ready("digits")

    errors: dict[str, list[str]] = {}
    calls: dict[str, Callable[[], object]] = {
        "unknown_model": lambda: client.infer("nope", [raw]),
        "wrong_shape": lambda: client.infer("digits", [_fp32(np.zeros((1, 1, 8, 9), np.float32))]),
        "wrong_name": lambda: client.infer("digits", [_fp32(tensor, name="pixels")]),
        "wrong_datatype": lambda: client.infer("digits", [_typed_int(tensor)]),
        "bad_image": lambda: client.infer("digits", [_bytes([b"not an image"])]),
        "load_unknown": lambda: client.load_model("nope"),
    }
    for label, call in calls.items():
        try:
            call()
        except InferenceServerException as error:
            errors[label] = [error.status(), error.message()]
        else:
            errors[label] = ["OK", ""]
    out["errors"] = errors
    print(json.dumps(out))


def _fp32(tensor: np.ndarray, name: str = "input") -> triton.InferInput:
    value = triton.InferInput(name, list(tensor.shape), "FP32")
    value.set_data_from_numpy(tensor)
    return value


def _typed_int(tensor: np.ndarray) -> triton.InferInput:
    value = triton.InferInput("input", list(tensor.shape), "INT32")
    value.set_data_from_numpy(tensor.astype(np.int32))
    return value


def _bytes(elements: list[bytes]) -> triton.InferInput:
    value = triton.InferInput("input", [len(elements)], "BYTES")
    value.set_data_from_numpy(np.array(elements, dtype=np.object_))
    return value


if __name__ == "__main__":
    main()
