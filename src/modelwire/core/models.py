"""The served models: loading, versions, states, draining, and the repository poller.

Every model found in the repositories is loaded at start. Each served version has a
state (LOADING, READY, UNLOADING, FAILED with a reason), its backend (what runs a
batch), its task (what turns requests into tensors and tensors into answers) and its own
dynamic batcher; this module knows neither tensors nor tasks, only how to open them. A
reload builds the new versions first, switches requests to them in one step, then lets
the old versions finish what they hold before closing them, so no request in flight
fails because of a reload.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from modelwire.core.backends import Backend
from modelwire.core.batching import Batcher, BatchObserver
from modelwire.core.images import DecodeLimits
from modelwire.core.opening import Opened, OpenOptions, open_version
from modelwire.core.plane import run_batch
from modelwire.core.repository import (
    ModelFolder,
    find_models,
    fingerprint,
    read_model_folder,
    validate_name,
)
from modelwire.core.tasks import Item, Task
from modelwire.core.tasks.text_classification import TextClassificationTask
from modelwire.core.tasks.text_embedding import TextEmbeddingTask
from modelwire.core.tensors import NamedTensors
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
    #: Where it runs: an ONNX Runtime execution provider, "python" or "pipeline".
    device: str = ""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: ModelState
    reason: str
    folder: ModelFolder | None
    versions: tuple[VersionStatus, ...]
    is_default: bool


class ServedVersion:
    """One version of one model: its backend, task, batcher and who is using it."""

    def __init__(self, model: str, version: int) -> None:
        self.model = model
        self.version = version
        self.state = VersionState.LOADING
        self.reason = ""
        self.opened: Opened | None = None
        self.batcher: Batcher[Item, NamedTensors] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def use(self) -> ServedVersion:
        """`with served.use():` counts a request as in flight, so unloading waits for
        it. (Its own __enter__ and __exit__: a generator context manager costs every call
        a generator.)"""
        return self

    def __enter__(self) -> ServedVersion:
        self._in_flight += 1
        self._idle.clear()
        return self

    def __exit__(self, *exc: object) -> None:
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
        if self.opened is not None and self.opened.backend is not None:
            self.opened.backend.close()

    @property
    def task(self) -> Task:
        assert self.opened is not None  # a READY version has it
        return self.opened.task

    @property
    def backend(self) -> Backend:
        assert self.opened is not None
        assert self.opened.backend is not None
        return self.opened.backend

    def status(self) -> VersionStatus:
        device = self.opened.device if self.opened is not None else ""
        return VersionStatus(self.version, self.state, self.reason, device)


class _Model:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._folder: ModelFolder | None = None
        #: The folder's parts, kept here since `resolve` reads them on every call and the
        #: config derives them each time it is asked.
        self.parts: tuple[tuple[str, int | None], ...] = ()
        self.reason = ""
        self.loaded = False
        self.versions: dict[int, ServedVersion] = {}
        self.loading: dict[int, ServedVersion] = {}
        self.fingerprint: object = None
        self.lock = asyncio.Lock()

    def ready_versions(self) -> list[ServedVersion]:
        return [v for v in self.versions.values() if v.state == VersionState.READY]

    @property
    def folder(self) -> ModelFolder | None:
        return self._folder

    @folder.setter
    def folder(self, folder: ModelFolder | None) -> None:
        self._folder = folder
        self.parts = tuple(folder.config.parts) if folder is not None else ()

    @property
    def step_models(self) -> list[str]:
        """The models a pipeline's steps run (none for other models)."""
        return sorted({model for model, _ in self.parts})


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
        device: str = "cpu",
        allow_python_models: bool = False,
    ) -> None:
        self._repositories = list(repositories)
        self._observe = observe
        self._executor = executor
        self._options = OpenOptions(limits, device, allow_python_models)
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
        missing = self._missing_step(name)
        if state == ModelState.READY and missing:
            state, reason = ModelState.UNAVAILABLE, missing
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
        return bool(model and model.ready_versions()) and not self._missing_step(name)

    def _missing_step(self, name: str, seen: frozenset[str] = frozenset()) -> str:
        """For a pipeline, why a step cannot run now (empty when every step can)."""
        model = self._models.get(name)
        if model is None or not model.parts:
            return ""
        for part, version in model.parts:
            other = self._models.get(part)
            ready = {v.version for v in other.ready_versions()} if other else set()
            if part in seen or not ready:
                return f"step model {part!r} is not served"
            if version is not None and version not in ready:
                return f"step model {part!r} version {version} is not served"
            deeper = self._missing_step(part, seen | {name})
            if deeper:
                return f"step model {part!r} cannot serve: {deeper}"
        return ""

    def _head_problem(self, task: object) -> str:
        """For a text classifier, why its head cannot take its embedding model's vectors
        (empty when it can, or when the embedding model is not serving yet: then each
        call checks)."""
        if not isinstance(task, TextClassificationTask):
            return ""
        try:
            embedding = self.resolve(task.embedding_model, task.embedding_version)
        except ModelwireError:
            return ""
        if not isinstance(embedding.task, TextEmbeddingTask):
            return (
                f"its [embedding] model {task.embedding_model!r} is not a text-embedding "
                f"model (its task is {embedding.task.name})"
            )
        try:
            task.check_width(embedding.model, embedding.task.width)
        except InvalidInput as error:
            return error.message
        return ""

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
            missing = self._missing_step(name)
            if missing:
                raise NotReady(f"model {name!r} is UNAVAILABLE: {missing}")
            return served
        ready = model.ready_versions()
        if not ready or (model.parts and self._missing_step(name)):
            status = self.status(name)
            detail = f": {status.reason}" if status.reason else ""
            raise NotReady(f"model {name!r} is {status.state}{detail}")
        if len(ready) == 1:
            return ready[0]
        wanted = model.folder.config.default_version if model.folder else None
        for served in ready:
            if served.version == wanted:
                return served
        return max(ready, key=lambda served: served.version)

    def _get(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            # Only here: every name in _models passed validate_name when it was loaded.
            validate_name("model", name)
            raise NotFound(
                f"model {name!r} is not served here; models: {', '.join(self.names()) or 'none'}"
            )
        return model

    def add_listener(self, listener: Listener) -> None:
        """Call listener(model, serving) whenever a model's serving state may change;
        serving is None once the model has been removed from the repository."""
        self._listeners.append(listener)

    def _notify(self, name: str, seen: frozenset[str] = frozenset()) -> None:
        serving = self.is_serving(name) if name in self._models else None
        for listener in self._listeners:
            listener(name, serving)
        for other, model in self._models.items():  # pipelines that run this model
            if name in model.step_models and other not in seen:
                self._notify(other, seen | {name})

    # --- changes -------------------------------------------------------------------

    async def load_all(self) -> None:
        found = await asyncio.to_thread(find_models, self._repositories)
        # Text classifiers last, so that their heads are checked against their embedding
        # models as they load.
        later = {name for name, path in found.items() if _text_classifier(path)}
        for name in sorted(found, key=lambda name: name in later):
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
            cycle = self._cycle(name, folder.config.step_models)
            if cycle:
                model.reason = f"{name}/model.toml: its steps run it again ({cycle}): a cycle"
                log.warning("model %s failed to load: %s", name, model.reason)
                self._notify(name)
                return self.status(name)
            previous = model.folder
            model.folder, model.reason, model.loaded = folder, "", True
            model.loading = {v: ServedVersion(name, v) for v in folder.versions}
            for served in model.loading.values():
                await self._open(folder, served)
            if model.ready_versions() and not any(
                v.state == VersionState.READY for v in model.loading.values()
            ):
                # Nothing new loaded: keep serving what served, as it was, and say why.
                failure = next((v.reason for v in model.loading.values() if v.reason), "")
                model.folder = previous
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
            opened = await loop.run_in_executor(
                self._executor, open_version, folder.source(served.version), self._options
            )
        except ModelwireError as error:  # InvalidInput, or an extra that is missing
            served.state, served.reason = VersionState.FAILED, error.message
            log.warning(
                "model %s version %d failed: %s", folder.name, served.version, error.message
            )
            return
        except Exception:
            log.exception("model %s version %d failed to open", folder.name, served.version)
            served.state = VersionState.FAILED
            served.reason = "it could not be opened; the server log has the details"
            return
        problem = self._head_problem(opened.task)
        if problem:
            if opened.backend is not None:
                opened.backend.close()
            served.state, served.reason = VersionState.FAILED, problem
            log.warning("model %s version %d failed: %s", folder.name, served.version, problem)
            return
        batching = folder.config.batching
        served.opened = opened
        if opened.backend is None:  # a pipeline: its steps' batchers batch
            served.state = VersionState.READY
            return
        served.batcher = Batcher(
            functools.partial(run_batch, opened.task, opened.backend),
            executor=self._executor,
            max_batch_size=max(1, opened.backend.info.max_batch_size),
            max_queue_delay_s=batching.max_queue_delay_ms / 1000,
            max_queue_size=batching.max_queue_size,
            concurrency=folder.config.instances,
            name=f"model {folder.name!r} version {served.version}",
            observer=self._observe(folder.name, served.version) if self._observe else None,
        )
        served.state = VersionState.READY

    def _cycle(self, name: str, steps: Sequence[str], path: tuple[str, ...] = ()) -> str:
        """The chain of pipelines by which `name`'s steps lead back to it, if any."""
        for step in steps:
            chain = (*path, step)
            if step == name:
                return " → ".join((name, *chain))
            other = self._models.get(step)
            if other is not None and step not in path:
                found = self._cycle(name, other.step_models, chain)
                if found:
                    return found
        return ""

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


def _text_classifier(folder: Path) -> bool:
    try:
        config = tomllib.loads((folder / "model.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("task") == "text-classification"
