"""ONNX Runtime sessions for classification models.

`OnnxClassifier.run` is blocking and thread-safe (ONNX Runtime releases the GIL while it
computes): callers on an event loop run it in an executor.
"""

from __future__ import annotations

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

    def __init__(self, source: ModelSource, intra_op_threads: int = 1) -> None:
        self.source = source
        self.preprocessing = source.config.input.preprocessing()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(source.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own types for missing/corrupt files
            raise InvalidInput(
                f"{source.config.name}/{source.version}/model.onnx could not be loaded "
                f"({type(exc).__name__}): is it an ONNX file?"
            ) from None
        self._io = self._check_io()

    def _check_io(self) -> _Io:
        config = self.source.config
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        input_name = config.input.name or next(iter(inputs))
        output_name = config.output.name or next(iter(outputs))
        where = f"{config.name}/{self.source.version}"
        if input_name not in inputs:
            raise InvalidInput(f"{where}: the ONNX file has no input {input_name!r}")
        if output_name not in outputs:
            raise InvalidInput(f"{where}: the ONNX file has no output {output_name!r}")
        spec = config.input
        expected = (
            [spec.channels, spec.height, spec.width]
            if spec.layout == "NCHW"
            else [spec.height, spec.width, spec.channels]
        )
        declared = list(inputs[input_name].shape)[1:]
        for got, want in zip(declared, expected, strict=False):
            if isinstance(got, int) and got != want:
                raise InvalidInput(
                    f"{where}: the ONNX input is {declared} per image "
                    f"but model.toml says {expected}"
                )
        width = list(outputs[output_name].shape)[-1]
        if isinstance(width, int) and width != len(self.source.labels):
            raise InvalidInput(
                f"{where}: the model has {width} outputs but {config.labels_file} has "
                f"{len(self.source.labels)} labels"
            )
        return _Io(input_name, output_name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities, shape [N, classes], for a preprocessed batch of N inputs."""
        (scores,) = self._session.run([self._io.output_name], {self._io.input_name: batch})
        scores = np.asarray(scores, dtype=np.float32)
        if len(scores) != len(batch):
            raise RuntimeError(f"model returned {len(scores)} results for {len(batch)} inputs")
        if self.source.config.output.kind == "logits":
            return softmax(scores)
        return scores
