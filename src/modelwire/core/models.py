"""The served models: loading, versions, states, draining, and the repository poller.

Every model found in the repositories is loaded at start. Each served version has a
state (LOADING, READY, UNLOADING, FAILED with a reason), its ONNX Runtime sessions and
its own dynamic batcher. A reload builds the new versions first, switches requests to
them in one step, then lets the old versions finish what they hold before closing them,
so no request in flight fails because of a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from modelwire.core.batching import Batcher, BatchObserver
from modelwire.core.images import DecodeLimits, decode, reduce, tensor_batch
from modelwire.core.repository import (
    ModelFolder,
    find_models,
    fingerprint,
    read_model_folder,
    validate_name,
)
from modelwire.core.runtime import OnnxClassifier
from modelwire.errors import InvalidInput, ModelwireError, NotFound, NotReady

__all__ = [
    "ModelManager",
    "ModelState",
    "ModelStatus",
    "ServedVersion",
    "VersionState",
    "VersionStatus",
]

log = logging.getLogger(__name__)


class VersionState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"


class ModelState(StrEnum):
    READY = "READY"  # at least one version serves
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"  # unloaded, or no version is ready
    FAILED = "FAILED"  # the folder could not be read, or every version failed


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: VersionState
    reason: str = ""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: ModelState
    reason: str
    folder: ModelFolder | None
    versions: tuple[VersionStatus, ...]
    is_default: bool


class ServedVersion:
    """One version of one model: its sessions, its batcher and who is using it."""

    def __init__(self, model: str, version: int) -> None:
        self.model = model
        self.version = version
        self.state = VersionState.LOADING
        self.reason = ""
        self.classifier: OnnxClassifier | None = None
        self.batcher: Batcher[bytes | np.ndarray, np.ndarray] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def use(self) -> Iterator[ServedVersion]:
        """Count a request as in flight, so unloading waits for it."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def drain_and_close(self) -> None:
        if self.state == VersionState.READY:
            self.state = VersionState.UNLOADING
        await self._idle.wait()
        if self.batcher is not None:
            await self.batcher.close()
        self.batcher = None
        self.classifier = None

    def status(self) -> VersionStatus:
        return VersionStatus(self.version, self.state, self.reason)


def classify_batch(
    classifier: OnnxClassifier,
    limits: DecodeLimits,
    items: list[bytes | np.ndarray],
    phases: dict[str, float],
) -> list[np.ndarray | BaseException]:
    """Decode and reduce each encoded image (a bad one fails alone), then preprocess
    them together; take preprocessed tensors as they are; run everything as one batch.
    Records the seconds spent decoding and preprocessing ("decode") and in the model
    ("inference").

    Each image is reduced right after it is decoded and its full-size picture dropped,
    so a batch holds one full-size picture at a time, not one per image."""
    started = time.perf_counter()
    spec = classifier.preprocessing
    results: list[np.ndarray | BaseException | None] = [None] * len(items)
    ready: dict[int, np.ndarray] = {}
    reduced: list[Image.Image] = []
    slots: list[int] = []
    for index, item in enumerate(items):
        if isinstance(item, np.ndarray):
            ready[index] = item
            continue
        try:
            reduced.append(reduce(decode(item, limits), spec))
            slots.append(index)
        except ModelwireError as error:
            results[index] = error
        except Exception as error:
            log.exception("unexpected error preparing an image for %s", classifier.source.name)
            results[index] = error
    if reduced:
        try:
            tensors = tensor_batch(reduced, spec)
        except Exception:
            log.exception("unexpected error preparing images for %s", classifier.source.name)
            tensors = _one_by_one(reduced, classifier, slots, results)
        ready.update(zip(slots, tensors, strict=True))
    prepared = time.perf_counter()
    phases["decode"] = prepared - started
    if ready:
        order = sorted(ready)
        probabilities = classifier.run(np.stack([ready[index] for index in order]))
        phases["inference"] = time.perf_counter() - prepared
        for index, row in zip(order, probabilities, strict=True):
            results[index] = row
    return [r if r is not None else RuntimeError("no result") for r in results]


def _one_by_one(
    reduced: list[Image.Image],
    classifier: OnnxClassifier,
    slots: list[int],
    results: list[np.ndarray | BaseException | None],
) -> np.ndarray:
    """Preprocess images one at a time, so one that breaks preprocessing fails alone;
    `slots` keeps only the indices of the images that made it."""
    tensors, kept = [], []
    for image, index in zip(reduced, slots, strict=True):
        try:
            tensors.append(tensor_batch([image], classifier.preprocessing)[0])
            kept.append(index)
        except Exception as error:
            results[index] = error
    slots[:] = kept
    return np.stack(tensors) if tensors else np.empty((0,))


class _Model:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.folder: ModelFolder | None = None
        self.reason = ""
        self.loaded = False
        self.versions: dict[int, ServedVersion] = {}
        self.loading: dict[int, ServedVersion] = {}
        self.fingerprint: object = None
        self.lock = asyncio.Lock()

    def ready_versions(self) -> list[ServedVersion]:
        return [v for v in self.versions.values() if v.state == VersionState.READY]


# (model name, serving?) with None once the model is gone from the repository.
Listener = Callable[[str, bool | None], None]


class Announcer(Protocol):
    """Told of the loads and unloads asked of this process, to repeat them elsewhere
    (the other worker processes of `serve --workers`)."""

    async def loaded(self, name: str) -> None: ...

    async def unloaded(self, name: str) -> None: ...


class ModelManager:
    def __init__(
        self,
        repositories: Sequence[Path],
        *,
        executor: Executor,
        limits: DecodeLimits,
        default_model: str | None = None,
        observe: Callable[[str, int], BatchObserver] | None = None,
    ) -> None:
        self._repositories = list(repositories)
        self._observe = observe
        self._executor = executor
        self._limits = limits
        self._default = default_model
        self._models: dict[str, _Model] = {}
        self._listeners: list[Listener] = []
        #: Repeats `load`/`unload` calls elsewhere (see Announcer); polling does not.
        self.announcer: Announcer | None = None

    # --- queries -------------------------------------------------------------------

    @property
    def repositories(self) -> list[Path]:
        """Where models are looked for, in order: the first naming a model wins."""
        return list(self._repositories)

    @property
    def default_model(self) -> str | None:
        if self._default is not None:
            return self._default
        if "digits" in self._models:
            return "digits"
        return min(self._models, default=None)

    def names(self) -> list[str]:
        return sorted(self._models)

    def statuses(self) -> list[ModelStatus]:
        return [self.status(name) for name in self.names()]

    def status(self, name: str) -> ModelStatus:
        model = self._get(name)
        versions = {**model.versions, **model.loading}
        states = [v.state for v in versions.values()]
        if VersionState.READY in states:
            state = ModelState.READY
        elif VersionState.LOADING in states:
            state = ModelState.LOADING
        elif model.reason or (states and all(s == VersionState.FAILED for s in states)):
            state = ModelState.FAILED
        else:
            state = ModelState.UNAVAILABLE
        reason = model.reason
        if not reason and state == ModelState.FAILED:
            reason = next(v.reason for v in versions.values() if v.reason)
        if not reason and not model.loaded:
            reason = "unloaded"
        return ModelStatus(
            name=name,
            state=state,
            reason=reason,
            folder=model.folder,
            versions=tuple(versions[v].status() for v in sorted(versions)),
            is_default=name == self.default_model,
        )

    def served_versions(self, name: str) -> list[ServedVersion]:
        """The versions of a model that are loaded (whatever their state)."""
        model = self._models.get(name)
        return list(model.versions.values()) if model else []

    def is_serving(self, name: str) -> bool:
        model = self._models.get(name)
        return bool(model and model.ready_versions())

    def resolve(self, name: str, version: int | None = None) -> ServedVersion:
        """The READY version a request should use. Raises InvalidInput for a bad name,
        NotFound for an unknown model or version, NotReady when it cannot serve now."""
        if not name:
            name = self.default_model or ""
            if not name:
                raise NotFound("no model is served here: load one, or name one in the request")
        model = self._get(name)
        if version is not None:
            if version < 1:
                raise InvalidInput(
                    f"version must be a positive number, got {version}", field="version"
                )
            served = model.versions.get(version)
            if served is None:
                listed = ", ".join(map(str, sorted(model.versions))) or "none"
                raise NotFound(f"model {name!r} has no version {version}; versions: {listed}")
            if served.state != VersionState.READY:
                detail = f": {served.reason}" if served.reason else ""
                raise NotReady(f"model {name!r} version {version} is {served.state}{detail}")
            return served
        ready = model.ready_versions()
        if not ready:
            status = self.status(name)
            detail = f": {status.reason}" if status.reason else ""
            raise NotReady(f"model {name!r} is {status.state}{detail}")
        wanted = model.folder.config.default_version if model.folder else None
        for served in ready:
            if served.version == wanted:
                return served
        return max(ready, key=lambda served: served.version)

    def _get(self, name: str) -> _Model:
        validate_name("model", name)
        model = self._models.get(name)
        if model is None:
            raise NotFound(
                f"model {name!r} is not served here; models: {', '.join(self.names()) or 'none'}"
            )
        return model

    def add_listener(self, listener: Listener) -> None:
        """Call listener(model, serving) whenever a model's serving state may change;
        serving is None once the model has been removed from the repository."""
        self._listeners.append(listener)

    def _notify(self, name: str) -> None:
        serving = self.is_serving(name) if name in self._models else None
        for listener in self._listeners:
            listener(name, serving)

    # --- changes -------------------------------------------------------------------

    async def load_all(self) -> None:
        found = await asyncio.to_thread(find_models, self._repositories)
        for name in found:
            await self.load(name, announce=False)

    async def load(self, name: str, *, announce: bool = True) -> ModelStatus:
        """Load (or re-read and reload) a model from the repository. A model that fails
        to load is reported FAILED; versions that were serving keep serving. With
        `announce`, the announcer repeats the load elsewhere once it is done here."""
        status = await self._load(name)
        if announce and self.announcer is not None:
            await self.announcer.loaded(name)
        return status

    async def _load(self, name: str) -> ModelStatus:
        validate_name("model", name)
        found = await asyncio.to_thread(find_models, self._repositories)
        if name not in found:
            raise NotFound(f"model {name!r} is not in the model repository")
        model = self._models.setdefault(name, _Model(name, found[name]))
        async with model.lock:
            model.path = found[name]
            model.fingerprint = await asyncio.to_thread(fingerprint, model.path)
            try:
                folder = await asyncio.to_thread(read_model_folder, model.path)
            except InvalidInput as error:
                log.warning("model %s failed to load: %s", name, error.message)
                model.reason = error.message
                self._notify(name)
                return self.status(name)
            model.folder, model.reason, model.loaded = folder, "", True
            model.loading = {v: ServedVersion(name, v) for v in folder.versions}
            for served in model.loading.values():
                await self._open(folder, served)
            if model.ready_versions() and not any(
                v.state == VersionState.READY for v in model.loading.values()
            ):
                # Nothing new loaded: keep serving what served, and say why.
                failure = next((v.reason for v in model.loading.values() if v.reason), "")
                model.reason = f"reload failed, the previous versions still serve: {failure}"
                model.loading = {}
                return self.status(name)
            old, model.versions, model.loading = model.versions, model.loading, {}
            self._notify(name)
            await asyncio.gather(*(served.drain_and_close() for served in old.values()))
        log.info(
            "model %s: %s",
            name,
            ", ".join(f"v{v.version} {v.state}" for v in model.versions.values()),
        )
        return self.status(name)

    async def _open(self, folder: ModelFolder, served: ServedVersion) -> None:
        loop = asyncio.get_running_loop()
        try:
            classifier = await loop.run_in_executor(
                self._executor, OnnxClassifier, folder.source(served.version)
            )
        except InvalidInput as error:
            served.state, served.reason = VersionState.FAILED, error.message
            log.warning(
                "model %s version %d failed: %s", folder.name, served.version, error.message
            )
            return
        batching = folder.config.batching
        served.classifier = classifier
        served.batcher = Batcher(
            functools.partial(classify_batch, classifier, self._limits),
            executor=self._executor,
            max_batch_size=batching.max_batch_size,
            max_queue_delay_s=batching.max_queue_delay_ms / 1000,
            max_queue_size=batching.max_queue_size,
            concurrency=folder.config.instances,
            name=f"model {folder.name!r} version {served.version}",
            observer=self._observe(folder.name, served.version) if self._observe else None,
        )
        served.state = VersionState.READY

    async def unload(self, name: str, *, announce: bool = True) -> ModelStatus:
        """Stop serving every version of a model once its requests in flight finish."""
        model = self._get(name)
        async with model.lock:
            old, model.versions, model.loaded = model.versions, {}, False
            self._notify(name)
            await asyncio.gather(*(served.drain_and_close() for served in old.values()))
        if announce and self.announcer is not None:
            await self.announcer.unloaded(name)
        return self.status(name)

    async def poll_once(self) -> None:
        """Load new models, reload changed ones, unload the ones removed from disk."""
        found = await asyncio.to_thread(find_models, self._repositories)
        for name, path in found.items():
            model = self._models.get(name)
            if model is None:
                await self.load(name, announce=False)
                continue
            # Reload what is served (or failed) and changed; leave unloaded models alone.
            changed = await asyncio.to_thread(fingerprint, path) != model.fingerprint
            if changed and (model.loaded or model.reason):
                await self.load(name, announce=False)
        for name in [n for n in self._models if n not in found]:
            await self.unload(name, announce=False)
            del self._models[name]
            self._notify(name)

    async def poll_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("polling the model repository failed")

    async def close(self) -> None:
        for model in self._models.values():
            old, model.versions = model.versions, {}
            await asyncio.gather(*(served.drain_and_close() for served in old.values()))
