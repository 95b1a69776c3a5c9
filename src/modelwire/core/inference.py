"""The data plane: image bytes → the named model version's batcher → ranked classes.

Transport-neutral: the gRPC servicers (and later the REST gateway) call `classify` and
turn its result or its ModelwireError into their own messages. Decoding and inference
run in the engine's thread pool, a batch at a time, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelwire.core.batching import BatchObserver, Timing
from modelwire.core.images import DEFAULT_LIMITS, DecodeLimits, decode
from modelwire.core.models import ModelManager
from modelwire.core.runtime import OnnxClassifier
from modelwire.errors import InvalidInput, NotReady

__all__ = ["ClassScore", "Classification", "Inference", "InferenceEngine"]

MAX_TOP_K = 1000

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
class Inference:
    """Probabilities [N, classes] from one model version, with what describes them."""

    model: str
    version: int
    classifier: OnnxClassifier
    probabilities: np.ndarray

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.source.labels


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
    ) -> None:
        self._on_timing = on_timing
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="modelwire-infer")
        self._limits = limits
        self.models = ModelManager(
            repositories,
            executor=self._executor,
            limits=limits,
            default_model=default_model,
            observe=observe,
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
        )
        await engine.models.load_all()
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
        if self._closed:
            raise NotReady("the server is shutting down: retry on another replica")
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput(
                f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}", field="top_k"
            )
        served = self.models.resolve(model, version)
        batcher, classifier = served.batcher, served.classifier
        assert batcher is not None  # a READY version has both
        assert classifier is not None
        self._in_flight += 1
        try:
            with served.use():
                probabilities, timing = await batcher.submit_timed(data)
            if self._on_timing is not None:
                self._on_timing(served.model, served.version, timing)
        finally:
            self._in_flight -= 1
        labels = classifier.source.labels
        count = min(top_k, len(labels))
        if count == 1:
            ranked = [int(np.argmax(probabilities))]
        else:
            ranked = [int(i) for i in np.argsort(-probabilities, kind="stable")[:count]]
        classes = tuple(ClassScore(labels[i], i, float(probabilities[i])) for i in ranked)
        return Classification(served.model, served.version, classes)

    async def infer(
        self,
        items: Sequence[bytes | np.ndarray],
        model: str = "",
        version: int | None = None,
    ) -> Inference:
        """Class probabilities for several encoded images or preprocessed tensors (one
        image each, the model's per-image input shape, float32), all through the model's
        batcher. The first item that fails fails the whole call."""
        if self._closed:
            raise NotReady("the server is shutting down: retry on another replica")
        served = self.models.resolve(model, version)
        batcher, classifier = served.batcher, served.classifier
        assert batcher is not None  # a READY version has both
        assert classifier is not None
        for item in items:
            if isinstance(item, np.ndarray) and item.shape != classifier.input_shape:
                raise InvalidInput(
                    f"each input must have shape {list(classifier.input_shape)}, got "
                    f"{list(item.shape)}",
                    field="inputs",
                )
        self._in_flight += 1
        try:
            with served.use():
                answers = await asyncio.gather(*(batcher.submit_timed(item) for item in items))
            if self._on_timing is not None:
                for _, timing in answers:
                    self._on_timing(served.model, served.version, timing)
            rows = [row for row, _ in answers]
        finally:
            self._in_flight -= 1
        values = np.stack(rows) if rows else np.empty((0, len(classifier.source.labels)))
        return Inference(served.model, served.version, classifier, values)

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
