"""ONNX Runtime sessions for classification models.

`OnnxClassifier.run` is blocking and thread-safe (ONNX Runtime releases the GIL while it
computes): callers on an event loop run it in an executor. With `instances` > 1 it holds
that many sessions, so that many batches can run at once without sharing a thread pool.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from modelwire.core.repository import ModelSource
from modelwire.errors import InvalidInput

__all__ = ["OnnxClassifier", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


@dataclass(frozen=True)
class _Io:
    input_name: str
    output_name: str


class OnnxClassifier:
    """One loaded model version: preprocessed batch in, class probabilities out."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.preprocessing = source.config.input.preprocessing()
        config = source.config
        self._sessions: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        first = self._open(config.threads)
        self._io = self._check_io(first)
        self._sessions.put(first)
        for _ in range(config.instances - 1):
            self._sessions.put(self._open(config.threads))

    def _open(self, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            return ort.InferenceSession(
                str(self.source.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own types for missing/corrupt files
            raise InvalidInput(
                f"{self._where}/model.onnx could not be loaded "
                f"({type(exc).__name__}): is it an ONNX file?"
            ) from None

    @property
    def _where(self) -> str:
        return f"{self.source.name}/{self.source.version}"

    def _check_io(self, session: ort.InferenceSession) -> _Io:
        config = self.source.config
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        input_name = config.input.name or next(iter(inputs))
        output_name = config.output.name or next(iter(outputs))
        if input_name not in inputs:
            raise InvalidInput(f"{self._where}: the ONNX file has no input {input_name!r}")
        if output_name not in outputs:
            raise InvalidInput(f"{self._where}: the ONNX file has no output {output_name!r}")
        spec = config.input
        expected = (
            [spec.channels, spec.height, spec.width]
            if spec.layout == "NCHW"
            else [spec.height, spec.width, spec.channels]
        )
        shape = list(inputs[input_name].shape)
        if len(shape) != 4:
            raise InvalidInput(
                f"{self._where}: the ONNX input has shape {shape}; an image model takes "
                f"[batch, {', '.join(map(str, expected))}]"
            )
        for got, want in zip(shape[1:], expected, strict=True):
            if isinstance(got, int) and got != want:
                raise InvalidInput(
                    f"{self._where}: the ONNX input is {shape[1:]} per image "
                    f"but model.toml says {expected}"
                )
        batch = shape[0]
        if isinstance(batch, int) and batch < config.batching.max_batch_size:
            raise InvalidInput(
                f"{self._where}: the ONNX input has a fixed batch size of {batch}; set "
                f"batching.max_batch_size = {batch} or export with a dynamic batch axis"
            )
        width = list(outputs[output_name].shape)[-1]
        if isinstance(width, int) and width != len(self.source.labels):
            raise InvalidInput(
                f"{self._where}: the model has {width} outputs but {config.labels_file} has "
                f"{len(self.source.labels)} labels"
            )
        return _Io(input_name, output_name)

    @property
    def input_name(self) -> str:
        return self._io.input_name

    @property
    def output_name(self) -> str:
        return self._io.output_name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one preprocessed image: (C, H, W) or (H, W, C)."""
        spec = self.source.config.input
        if spec.layout == "NCHW":
            return (spec.channels, spec.height, spec.width)
        return (spec.height, spec.width, spec.channels)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities, shape [N, classes], for a preprocessed batch of N inputs."""
        session = self._sessions.get()
        try:
            (scores,) = session.run([self._io.output_name], {self._io.input_name: batch})
        finally:
            self._sessions.put(session)
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (len(batch), len(self.source.labels)):
            raise RuntimeError(
                f"{self._where} returned shape {list(scores.shape)} for {len(batch)} inputs"
            )
        if self.source.config.output.kind == "logits":
            return softmax(scores)
        return scores
