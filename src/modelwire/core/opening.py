"""Opening a model version: the backend its model.toml names and the task on top of it.

Runs in the engine's thread pool (loading an ONNX file or importing model.py is slow);
every problem is InvalidInput with a reason, which makes the version FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelwire.core.backends import Backend
from modelwire.core.backends.onnx import OnnxBackend
from modelwire.core.backends.pocketsphinx import PocketSphinxBackend
from modelwire.core.backends.python import PythonBackend
from modelwire.core.images import DecodeLimits
from modelwire.core.pipelines import PLATFORM as PIPELINE
from modelwire.core.pipelines import Pipeline
from modelwire.core.repository import ModelSource
from modelwire.core.tasks import Task
from modelwire.core.tasks.image_classification import ImageClassificationTask
from modelwire.core.tasks.object_detection import ObjectDetectionTask
from modelwire.core.tasks.ocr import OcrTask
from modelwire.core.tasks.speech_recognition import SpeechRecognitionTask
from modelwire.core.tasks.tensor import TensorTask
from modelwire.core.tasks.text_classification import TextClassificationTask
from modelwire.core.tasks.text_embedding import TextEmbeddingTask
from modelwire.core.tensors import NamedTensors

__all__ = ["OpenOptions", "Opened", "open_version"]


@dataclass(frozen=True)
class OpenOptions:
    """What the server decides for every model: image limits, the default device, and
    whether Python models may run."""

    limits: DecodeLimits
    device: str = "cpu"
    allow_python_models: bool = False


@dataclass(frozen=True)
class Opened:
    """A version ready to serve. A pipeline has no backend of its own (its steps are
    other served models) and its task is the Pipeline."""

    task: Task
    backend: Backend | None
    platform: str
    device: str
    labels: tuple[str, ...]
    #: Why it runs elsewhere than asked (a CPU fallback); empty when it does not.
    fallback: str = ""

    @property
    def pipeline(self) -> Pipeline | None:
        return self.task if isinstance(self.task, Pipeline) else None

    def run(self, inputs: NamedTensors) -> NamedTensors:
        """One batch straight through backend and task, without a batcher (for tools
        and benchmarks; blocking)."""
        assert self.backend is not None  # a pipeline runs through the engine
        return self.task.finish(self.backend.run(inputs), inputs)


def open_version(source: ModelSource, options: OpenOptions) -> Opened:
    config = source.config
    if config.task == "pipeline":
        pipeline = Pipeline(source)
        return Opened(pipeline, None, PIPELINE, "pipeline", source.labels)
    if config.task == "ocr":
        return Opened(OcrTask(source), None, PIPELINE, "pipeline", ())
    backend: Backend
    fallback = ""
    if config.backend == "pocketsphinx":
        speech = PocketSphinxBackend(source)
        return Opened(SpeechRecognitionTask(speech), speech, speech.info.platform, "CPU", ())
    if config.backend == "python":
        backend = PythonBackend(source, allowed=options.allow_python_models)
    else:
        onnx = OnnxBackend(source, default_device=options.device)
        backend, fallback = onnx, onnx.choice.fallback
    info = backend.info
    task: Task
    if config.task == "image-classification":
        task = ImageClassificationTask(source, info, options.limits)
    elif config.task == "object-detection":
        task = ObjectDetectionTask(source, info, options.limits)
    elif config.task == "text-embedding":
        task = TextEmbeddingTask(source, backend)
    elif config.task == "text-classification":
        task = TextClassificationTask(source, info)
    else:
        task = TensorTask(info, bytes_as_text=config.backend == "onnx")
    device = f"{info.device} (fallback: {fallback})" if fallback else info.device
    return Opened(task, backend, info.platform, device, source.labels, fallback)
