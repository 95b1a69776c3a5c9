"""Inference: resolve model/version → task.encode → batcher → backend → task.finish.

Transport-neutral: the gRPC servicers and the REST gateway call `classify` (the image
task's answer), `embed` (the text-embedding task's) or `infer` (tensors, the Open
Inference Protocol's view) and turn the
result or its ModelwireError into their own messages. Encoding and inference run in
the engine's thread pool, a batch at a time, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from modelwire.core.audio import PcmFormat
from modelwire.core.backends.pocketsphinx import SpeechContext
from modelwire.core.batching import BatchObserver, Timing
from modelwire.core.images import DEFAULT_LIMITS, DecodeLimits, decode
from modelwire.core.models import ModelManager, ServedVersion
from modelwire.core.speech import (
    Transcription,
    TranscriptionStream,
    lend_recognition,
    settle,
    transcribe_samples,
)
from modelwire.core.tasks import Item, item_key, item_rows
from modelwire.core.tasks.image_classification import ImageClassificationTask
from modelwire.core.tasks.object_detection import (
    MAX_DETECTIONS,
    ObjectDetectionTask,
    check_request,
)
from modelwire.core.tasks.ocr import OcrTask
from modelwire.core.tasks.speech_recognition import SpeechRecognitionTask
from modelwire.core.tasks.text_classification import TextClassificationTask
from modelwire.core.tasks.text_embedding import EMBEDDING, TEXT, TOKENS, TextEmbeddingTask
from modelwire.core.tensors import NamedTensors, check_tensors
from modelwire.core.threads import WarmThreadPool
from modelwire.core.vision import Detections, Reading, Run, find_boxes, read_lines
from modelwire.errors import InvalidInput, NotFound, NotReady

__all__ = ["ClassScore", "Classification", "Embeddings", "InferenceEngine", "TensorResult"]

MAX_TOP_K = 1000

R = TypeVar("R")

#: Told, in the caller's context, where each input's time went: (model, version, timing).
TimingHook = Callable[[str, int, Timing], None]


@dataclass(frozen=True)
class ClassScore:
    label: str
    index: int
    score: float


@dataclass(frozen=True)
class Classification:
    model: str
    version: int
    classes: tuple[ClassScore, ...]

    @property
    def top(self) -> ClassScore:
        return self.classes[0]


@dataclass(frozen=True)
class Embeddings:
    """One vector per text, in order ([texts, width], FP32), and the tokens each used."""

    model: str
    version: int
    vectors: np.ndarray
    tokens: np.ndarray


@dataclass(frozen=True)
class TensorResult:
    """Every output of one model version for one request, with the model's labels
    (for the classification extension; empty when the model has none)."""

    model: str
    version: int
    outputs: NamedTensors
    labels: tuple[str, ...]


class InferenceEngine:
    """Owns the models and the thread pool their CPU work runs in."""

    def __init__(
        self,
        repositories: Sequence[Path],
        *,
        threads: int,
        limits: DecodeLimits = DEFAULT_LIMITS,
        default_model: str | None = None,
        observe: Callable[[str, int], BatchObserver] | None = None,
        on_timing: TimingHook | None = None,
        device: str = "cpu",
        allow_python_models: bool = False,
    ) -> None:
        self._on_timing = on_timing
        self._executor = WarmThreadPool(threads, thread_name_prefix="modelwire-infer")
        self._limits = limits
        self.models = ModelManager(
            repositories,
            executor=self._executor,
            limits=limits,
            default_model=default_model,
            observe=observe,
            device=device,
            allow_python_models=allow_python_models,
        )
        self._closed = False
        self._in_flight = 0

    @classmethod
    async def start(
        cls,
        repositories: Sequence[Path],
        *,
        threads: int,
        limits: DecodeLimits = DEFAULT_LIMITS,
        default_model: str | None = None,
        observe: Callable[[str, int], BatchObserver] | None = None,
        on_timing: TimingHook | None = None,
        device: str = "cpu",
        allow_python_models: bool = False,
    ) -> InferenceEngine:
        """Create the engine and load every model in the repositories; `observe(model,
        version)` gives each version's batcher an observer (for metrics)."""
        engine = cls(
            repositories,
            threads=threads,
            limits=limits,
            default_model=default_model,
            observe=observe,
            on_timing=on_timing,
            device=device,
            allow_python_models=allow_python_models,
        )
        try:
            await engine.models.load_all()
        except BaseException:
            await engine.close()
            raise
        return engine

    @property
    def in_flight(self) -> int:
        """How many classify calls are running right now."""
        return self._in_flight

    async def classify(
        self, data: bytes, model: str = "", version: int | None = None, top_k: int = 1
    ) -> Classification:
        """Classify one encoded image. Raises InvalidInput, NotFound, NotReady or
        Overloaded (queue full)."""
        self._check_open()
        _check_top_k(top_k)
        served = self.models.resolve(model, version)
        task = served.task
        if not isinstance(task, ImageClassificationTask):
            raise InvalidInput(
                f"model {served.model!r} is a {task.name} model, not an image classifier: "
                "call it with the Open Inference Protocol (ModelInfer)",
                field="model",
            )
        outputs = await self._submit(served, [data])
        classes = _ranked(outputs[task.output_name][0], task.labels, top_k)
        return Classification(served.model, served.version, classes)

    async def classify_text(
        self, model: str, version: int | None, texts: Sequence[str], top_k: int = 1
    ) -> list[Classification]:
        """The ranked classes of each text by a text classifier: its embedding model's
        vectors (batched with that model's other callers), then its head."""
        self._check_open()
        _check_top_k(top_k)
        served = self.models.resolve(model, version)
        task = served.task
        if not isinstance(task, TextClassificationTask):
            raise InvalidInput(
                f"model {served.model!r} is a {task.name} model, not a text classifier",
                field="model",
            )
        scores = await self._text_scores(served, task, texts)
        return [
            Classification(served.model, served.version, _ranked(row, task.labels, top_k))
            for row in scores
        ]

    async def _text_scores(
        self, served: ServedVersion, task: TextClassificationTask, texts: Sequence[str | bytes]
    ) -> np.ndarray:
        with served.use():  # unloading the classifier waits for its embedding step too
            try:
                embedded = await self.embed(task.embedding_model, task.embedding_version, texts)
            except NotFound as missing:
                raise NotReady(
                    f"model {served.model!r} cannot serve: its embedding model "
                    f"{task.embedding_model!r} is not served ({missing.message})"
                ) from None
            task.check_width(embedded.model, embedded.vectors.shape[1])
            result = await self._run(served, [{task.input_name: embedded.vectors}], checked=True)
        return result.outputs[task.output_name]

    async def embed(
        self, model: str, version: int | None, texts: Sequence[str | bytes]
    ) -> Embeddings:
        """The embeddings of `texts` by a text-embedding model, batched with other calls."""
        self._check_open()
        served = self.models.resolve(model, version)
        if not isinstance(served.task, TextEmbeddingTask):
            raise InvalidInput(
                f"model {served.model!r} is a {served.task.name} model, not a text-embedding model",
                field="model",
            )
        if not texts:
            raise InvalidInput("send at least one text", field="text")
        array = np.empty(len(texts), dtype=object)
        array[:] = list(texts)
        result = await self._run(served, [{TEXT: array}], checked=True)
        outputs = result.outputs
        return Embeddings(served.model, served.version, outputs[EMBEDDING], outputs[TOKENS])

    async def transcribe(
        self, model: str, version: int | None, audio: bytes, context: SpeechContext
    ) -> Transcription:
        """The transcript of one audio file by a speech-recognition model. The file is
        decoded once a decoder is lent, so decoding runs at most `decoders` at a time."""
        served, task = self._speech(model, version)
        context.check()
        loop = asyncio.get_running_loop()
        with served.use():
            recognition = await lend_recognition(task.backend, context, self._executor)
            try:
                samples = await settle(loop.run_in_executor(self._executor, task.decode, audio))
                transcript = await settle(
                    loop.run_in_executor(self._executor, transcribe_samples, recognition, samples)
                )
            finally:
                await settle(loop.run_in_executor(self._executor, recognition.close))
        return Transcription(served.model, served.version, transcript)

    async def open_transcription(
        self, model: str, version: int | None, fmt: PcmFormat, context: SpeechContext
    ) -> TranscriptionStream:
        """A stream of utterances on one decoder of a speech-recognition model; the
        caller closes it, and the version stays in use (and loaded) until then."""
        served, task = self._speech(model, version)
        context.check()
        fmt.check(task.backend.limits)
        served.__enter__()
        try:
            recognition = await lend_recognition(task.backend, context, self._executor)
        except BaseException:
            served.__exit__()
            raise
        try:
            return TranscriptionStream(served, task, fmt, recognition, self._executor)
        except BaseException:
            recognition.close()
            served.__exit__()
            raise

    async def detect(
        self,
        model: str,
        version: int | None,
        image: bytes,
        score_threshold: float = 0.0,
        max_detections: int = 0,
    ) -> Detections:
        """The objects an object-detection model finds in an encoded picture, best
        first; `max_detections` 0 means the model's `max_candidates`."""
        self._check_open()
        served = self.models.resolve(model, version)
        task = served.task
        if not isinstance(task, ObjectDetectionTask):
            raise InvalidInput(
                f"model {served.model!r} is a {task.name} model, not an object detector",
                field="model",
            )
        most = max_detections or min(task.config.max_candidates, MAX_DETECTIONS)
        check_request(score_threshold, most)
        with served.use():
            prepared, found = await find_boxes(task, self._single(served), image, self._executor)
        found_here = task.detections(found, prepared, score_threshold, most)
        return Detections(served.model, served.version, tuple(found_here))

    async def read_text(self, model: str, version: int | None, image: bytes) -> Reading:
        """The text lines an OCR pipeline reads in an encoded picture, in reading order."""
        self._check_open()
        served = self.models.resolve(model, version)
        task = served.task
        if not isinstance(task, OcrTask):
            raise InvalidInput(
                f"model {served.model!r} is a {task.name} model, not an OCR pipeline",
                field="model",
            )
        config = task.config
        with served.use():
            detector = self._part(served.model, config.detector)
            if not isinstance(detector.task, ObjectDetectionTask):
                raise NotReady(
                    f"model {served.model!r} cannot serve: its detector {config.detector!r} is "
                    "not an object-detection model"
                )
            classifier = self._part(served.model, config.classifier) if config.classifier else None
            recognizer = self._part(served.model, config.recognizer)
            lines = await read_lines(
                task,
                detector.task,
                self._single(detector),
                self._single(classifier) if classifier is not None else None,
                self._single(recognizer),
                image,
                self._executor,
            )
        return Reading(served.model, served.version, tuple(lines))

    def _part(self, pipeline: str, model: str) -> ServedVersion:
        try:
            return self.models.resolve(model, None)
        except NotFound as missing:
            raise NotReady(
                f"model {pipeline!r} cannot serve: its model {model!r} is not served "
                f"({missing.message})"
            ) from None

    def _single(self, served: ServedVersion) -> Run:
        """`served` as a function of its one input tensor to its first output."""
        inputs, outputs = served.task.inputs, served.task.outputs
        if len(inputs) != 1 or not outputs:
            raise NotReady(
                f"model {served.model!r} cannot be a step here: it takes {len(inputs)} inputs "
                f"(one is needed) and gives {len(outputs)} outputs"
            )
        (spec,), output = inputs, outputs[0].name

        async def run(tensor: np.ndarray) -> np.ndarray:
            result = await self.infer(served, [{spec.name: tensor}])
            return result.outputs[output]

        return run

    def _speech(
        self, model: str, version: int | None
    ) -> tuple[ServedVersion, SpeechRecognitionTask]:
        self._check_open()
        served = self.models.resolve(model, version)
        task = served.task
        if not isinstance(task, SpeechRecognitionTask):
            raise InvalidInput(
                f"model {served.model!r} is a {task.name} model, not a speech-recognition model",
                field="model",
            )
        return served, task

    async def infer(
        self, served: ServedVersion, items: Sequence[Item], *, checked: bool = False
    ) -> TensorResult:
        """Every output of a version for one request: its tensors as one item (checked
        here against the model's inputs), or for an image model encoded images, one item
        each. A request of more rows than a batch holds runs as several batches. The
        first item that fails fails the whole call. `checked`: the items come from
        `oip.request_items`, which has checked them against this version's inputs. A
        text classifier takes its texts through its embedding model first."""
        self._check_open()
        task = served.opened.task if served.opened is not None else None
        if isinstance(task, OcrTask):
            raise InvalidInput(
                f"model {served.model!r} reads text in pictures: call ReadText", field="model"
            )
        if isinstance(task, TextClassificationTask):
            (tensors,) = items
            if not checked:
                check_tensors(task.inputs, _tensors(tensors), batched=True)
            texts = list(_tensors(tensors)[TEXT].reshape(-1))
            scores = await self._text_scores(served, task, texts)
            return TensorResult(
                served.model, served.version, {task.output_name: scores}, task.labels
            )
        return await self._run(served, items, checked=checked)

    async def _run(
        self, served: ServedVersion, items: Sequence[Item], *, checked: bool
    ) -> TensorResult:
        """`infer` through the version's own backend (or its pipeline's steps)."""
        pipeline = served.opened.pipeline if served.opened is not None else None
        if pipeline is not None:
            (tensors,) = items
            check_tensors(pipeline.inputs, _tensors(tensors), batched=True)
            with served.use():
                outputs = await pipeline.run(_tensors(tensors), self._step)
            return TensorResult(served.model, served.version, outputs, ())
        info = served.backend.info
        work: list[Item] = []
        for item in items:
            if isinstance(item, bytes):
                work.append(item)
                continue
            if checked:  # by the transport, against these same specs
                rows = len(next(iter(item.values()))) if info.batched else 1
            else:
                rows = check_tensors(served.task.inputs, item, info.batched)
            if info.batched and rows > info.max_batch_size:
                size = info.max_batch_size
                work.extend(
                    {name: array[start : start + size] for name, array in item.items()}
                    for start in range(0, rows, size)
                )
            else:
                work.append(item)
        outputs = await self._submit(served, work)
        assert served.opened is not None
        return TensorResult(served.model, served.version, outputs, served.opened.labels)

    async def infer_tensors(
        self, model: str, version: int | None, inputs: NamedTensors
    ) -> TensorResult:
        """`infer` by model name, for one request of tensors."""
        return await self.infer(self.models.resolve(model, version), [inputs])

    async def _step(self, model: str, version: int | None, inputs: NamedTensors) -> NamedTensors:
        return (await self.infer_tensors(model, version, inputs)).outputs

    async def _submit(self, served: ServedVersion, items: Sequence[Item]) -> NamedTensors:
        """Every item through the version's batcher; their outputs, rows in item order."""
        batcher = served.batcher
        if batcher is None or batcher.closed:
            raise NotReady(f"model {served.model!r} version {served.version} is unloading: retry")
        if len(items) > batcher.max_queue_size:
            raise InvalidInput(
                f"the request makes {len(items)} batches (images, or {batcher.max_batch_size} "
                f"rows each); the model's queue holds {batcher.max_queue_size}: send less "
                "per request",
                field="inputs",
            )
        batched = served.backend.info.batched
        on_timing = self._on_timing
        self._in_flight += 1
        try:
            with served.use():
                if on_timing is not None:
                    timed = await _each(batcher.submit_timed, items, batched)
                    for _, timing in timed:
                        on_timing(served.model, served.version, timing)
                    answers = [outputs for outputs, _ in timed]
                elif len(items) == 1:  # most calls: inlined, not even `_each`'s coroutine
                    item = items[0]
                    key, rows = item_key(item, batched), item_rows(item, batched)
                    answers = [await batcher.submit(item, key=key, rows=rows)]
                else:
                    answers = await _each(batcher.submit, items, batched)
        finally:
            self._in_flight -= 1
        if len(answers) == 1:
            return answers[0]
        names = answers[0].keys()
        try:
            return {name: np.concatenate([out[name] for out in answers]) for name in names}
        except ValueError:
            raise InvalidInput(
                f"the request ran as {len(answers)} batches whose outputs differ in shape: "
                f"send at most {batcher.max_batch_size} rows per request",
                field="inputs",
            ) from None

    def _check_open(self) -> None:
        if self._closed:
            raise NotReady("the server is shutting down: retry on another replica")

    async def check_image(self, data: bytes) -> None:
        """Decode an image as classification would (in the engine's threads), raising
        InvalidInput for one that classification would refuse."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, decode, data, self._limits)

    async def close(self) -> None:
        """Refuse new work, let queued and running batches finish, stop the threads."""
        self._closed = True
        await self.models.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True)


async def _each(
    submit: Callable[..., Awaitable[R]], items: Sequence[Item], batched: bool
) -> list[R]:
    """Every item through `submit` (a batcher's), results in item order."""
    if len(items) == 1:  # most calls: awaited as it is, no task of its own
        item = items[0]
        return [await submit(item, key=item_key(item, batched), rows=item_rows(item, batched))]
    return await _all_or_none(
        submit(item, key=item_key(item, batched), rows=item_rows(item, batched)) for item in items
    )


async def _all_or_none(calls: Iterable[Awaitable[R]]) -> list[R]:
    """Every call's result, in order; at the first failure the others are cancelled
    (their items leave the queue unrun) and the failure is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _tensors(item: Item) -> NamedTensors:
    if isinstance(item, bytes):
        raise InvalidInput("a pipeline takes tensors, not encoded bytes", field="inputs")
    return item


def _check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}", field="top_k")


def _ranked(probabilities: np.ndarray, labels: Sequence[str], top_k: int) -> tuple[ClassScore, ...]:
    """The `top_k` most likely classes, best first (ties in label order)."""
    count = min(top_k, len(labels))
    if count == 1:
        ranked = [int(np.argmax(probabilities))]
    else:
        ranked = [int(i) for i in np.argsort(-probabilities, kind="stable")[:count]]
    return tuple(ClassScore(labels[i], i, float(probabilities[i])) for i in ranked)
