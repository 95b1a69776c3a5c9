"""Speech recognition: audio files and PCM streams → mono samples at the model's rate →
transcripts.

Through the Open Inference Protocol the model is tensors: FP32 samples in, the text out,
one request at a time. The task's own calls (`Transcribe`, `TranscribeStream`) go to the
backend's pool of decoders instead of the batcher: a decoder takes one utterance at a
time, and a stream's utterances need the same decoder from chunk to chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelwire.core.audio import PcmFormat, PcmStream, decode_audio
from modelwire.core.backends.pocketsphinx import PocketSphinxBackend
from modelwire.core.tasks import Encoded, Item
from modelwire.core.tasks.tensor import TensorTask
from modelwire.core.tensors import NamedTensors, TensorSpec

__all__ = ["SpeechRecognitionTask"]


class SpeechRecognitionTask:
    name = "speech-recognition"

    def __init__(self, backend: PocketSphinxBackend) -> None:
        self.backend = backend
        self._tensors = TensorTask(backend.info)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._tensors.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._tensors.outputs

    def encode(self, items: Sequence[Item]) -> Encoded:
        return self._tensors.encode(items)

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        return outputs

    def decode(self, data: bytes) -> np.ndarray:
        """An audio file's samples as the model takes them (blocking)."""
        return decode_audio(data, self.backend.sample_rate, self.backend.limits)

    def pcm_stream(self, fmt: PcmFormat) -> PcmStream:
        return PcmStream(fmt, self.backend.sample_rate, self.backend.limits)
