"""The data plane: image bytes → the named model → ranked classes.

Transport-neutral: the gRPC servicers (and later the REST gateway) call `classify` and
turn its result or its ModelwireError into their own messages. Decoding and inference are
CPU work and run in the engine's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelwire.core.images import DEFAULT_LIMITS, DecodeLimits, decode, preprocess
from modelwire.core.repository import load_model_source, validate_name
from modelwire.core.runtime import OnnxClassifier
from modelwire.errors import InvalidInput, NotFound, NotReady

__all__ = ["ClassScore", "Classification", "InferenceEngine"]


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


class InferenceEngine:
    """Owns the loaded models and the thread pool their CPU work runs in."""

    def __init__(
        self,
        models: Sequence[OnnxClassifier],
        *,
        threads: int,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        if not models:
            raise ValueError("an engine needs at least one model")
        self._models = {m.source.config.name: m for m in models}
        self.default_model = models[0].source.config.name
        self._limits = limits
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="modelwire-infer")
        self._closed = False
        self._in_flight = 0

    @classmethod
    def from_folders(
        cls, folders: Sequence[Path], *, threads: int, limits: DecodeLimits = DEFAULT_LIMITS
    ) -> InferenceEngine:
        models = [OnnxClassifier(load_model_source(folder)) for folder in folders]
        return cls(models, threads=threads, limits=limits)

    @property
    def in_flight(self) -> int:
        """How many classify calls are running right now."""
        return self._in_flight

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    async def classify(self, data: bytes, model: str = "", top_k: int = 1) -> Classification:
        """Classify one encoded image; raises InvalidInput, NotFound or NotReady."""
        if self._closed:
            raise NotReady("the server is shutting down: retry on another replica")
        classifier = self._model(model)
        if top_k < 1:
            raise InvalidInput(f"top_k must be at least 1, got {top_k}")
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            return await loop.run_in_executor(
                self._executor, self._classify, classifier, data, top_k
            )
        finally:
            self._in_flight -= 1

    def _model(self, name: str) -> OnnxClassifier:
        name = name or self.default_model
        validate_name("model", name)
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(
                f"model {name!r} is not served here; served models: {', '.join(self.model_names)}"
            ) from None

    def _classify(self, classifier: OnnxClassifier, data: bytes, top_k: int) -> Classification:
        source = classifier.source
        tensor = preprocess(decode(data, self._limits), classifier.preprocessing)
        probabilities = classifier.run(tensor[np.newaxis])[0]
        ranked = np.argsort(-probabilities, kind="stable")[:top_k]
        classes = tuple(
            ClassScore(source.labels[i], int(i), float(probabilities[i])) for i in ranked
        )
        return Classification(source.config.name, source.version, classes)

    def close(self) -> None:
        """Refuse new work and let the threads finish what they have. Idempotent."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=False)
