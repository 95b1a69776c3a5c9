"""The composition root: one serving process, put together from its settings.

`start_server` opens the core services (the inference engine over the model
repositories, the dataset store, the training jobs) and then the adapters over them, as
siblings: the gRPC server, the plaintext health port, the REST gateway and the metrics
port. `start_worker` does the same for one process of `serve --workers`, with the pieces
the workers share between them (see `modelwire.server.peers`). Each step enters what it
opened into one `contextlib.AsyncExitStack`: a step that fails closes exactly what the
steps before it opened, in reverse, and `RunningServer.stop` drains and then closes the
same stack. `serve` runs a server until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import numpy as np

from modelwire.api.v1 import training_pb2_grpc
from modelwire.core.batching import BatchObserver
from modelwire.core.datasets import Datasets
from modelwire.core.extras import installed
from modelwire.core.images import DecodeLimits
from modelwire.core.inference import InferenceEngine, TimingHook
from modelwire.core.repository import DEFAULT_REPOSITORY
from modelwire.core.tokens import TokenStore
from modelwire.core.training.jobs import Embedder, TrainingJobs
from modelwire.core.training.runner import Trainer
from modelwire.core.training.store import JobStore
from modelwire.errors import InvalidInput
from modelwire.metrics import ServerMetrics
from modelwire.server import app as grpc_app
from modelwire.server.calls import CallGuard
from modelwire.server.health import HealthServicer
from modelwire.server.peers import PeerModels, TrainingProxyServicer, WorkerRole
from modelwire.server.security import (
    check_exposure,
    load_tokens,
    rest_tls_options,
    server_credentials,
)
from modelwire.server.servicers.training import TrainingServicer
from modelwire.settings import Settings
from modelwire.tracing import Tracing, from_environment

if TYPE_CHECKING:
    from modelwire.rest.server import RestServer

__all__ = [
    "RunningServer",
    "loop_factory",
    "rest_gateway_port",
    "serve",
    "start_engine",
    "start_server",
    "start_worker",
]

log = logging.getLogger(__name__)


class _Grace:
    """When the grace period of a stop ends; the servers' closers read what is left of
    it. Unset (a failed start, or `stop(None)`), they stop at once."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def left(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


@dataclass
class RunningServer:
    """A started server: the grpc.aio server, its bound port and what it owns."""

    server: grpc.aio.Server
    port: int
    addresses: list[str]
    health: HealthServicer
    engine: InferenceEngine
    datasets: Datasets
    #: None in a worker other than 0 of `serve --workers`, which forwards training calls.
    training: TrainingJobs | None
    #: Sees every call: refuses new ones while the server drains.
    guard: CallGuard
    services: list[str] = field(default_factory=list)
    rest: RestServer | None = None
    metrics_server: RestServer | None = None
    #: Health alone, in plaintext, for probes (settings.health_port).
    health_server: grpc.aio.Server | None = None
    health_addresses: list[str] = field(default_factory=list)
    stopped: bool = False
    _closing: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _grace: _Grace = field(default_factory=_Grace)
    #: The repository poller (poll_repository_s), stopped first.
    _poller: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None) -> None:
        """Health NOT_SERVING, refuse new calls, let calls in flight finish within
        `grace` seconds (None: cancel them now), then close everything in the reverse
        of the order it was opened. Safe to call more than once.

        New calls are refused UNAVAILABLE by our own call guard until the calls in
        flight have finished and no new call has come for a moment; only then is
        grpc's server stopped. grpc cancels the calls that reach it after its own
        shutdown began (CANCELLED, which clients do not retry): draining first leaves
        none to meet that, unless clients keep calling through the whole grace period."""
        if self.stopped:
            return
        self.stopped = True
        self.health.enter_graceful_shutdown()
        if self._poller is not None:
            await _cancelled(self._poller)
        loop = asyncio.get_running_loop()
        self._grace.deadline = None if grace is None else loop.time() + grace
        # The HTTP servers drain themselves (within the grace period) meanwhile.
        http_stopping = [
            asyncio.ensure_future(http.stop())
            for http in (self.rest, self.metrics_server)
            if http is not None
        ]
        if grace is not None:
            self.guard.drain()
            await self.guard.wait_drained(grace)
        # Every server stops at once; the closers in the stack find them stopped.
        servers = [s for s in (self.server, self.health_server) if s is not None]
        await asyncio.gather(*http_stopping, *(s.stop(self._grace.left()) for s in servers))
        await self._closing.aclose()


async def start_engine(
    settings: Settings,
    observe: Callable[[str, int], BatchObserver] | None = None,
    on_timing: TimingHook | None = None,
) -> InferenceEngine:
    """The engine over the data directory's trained models, the configured repositories
    and the built-in models, in that order (the first naming a model wins)."""
    trained = settings.data_dir / "models"
    trained.mkdir(parents=True, exist_ok=True)
    repositories = [trained, *settings.model_repositories]
    for repository in settings.model_repositories:
        if not repository.is_dir():
            raise OSError(f"model repository {repository} is not a folder")
    if settings.default_models:
        repositories.append(DEFAULT_REPOSITORY)
    return await InferenceEngine.start(
        repositories,
        threads=settings.threads,
        limits=DecodeLimits(max_pixels=settings.max_image_pixels),
        default_model=settings.default_model,
        observe=observe,
        on_timing=on_timing,
        device=settings.device,
        allow_python_models=settings.allow_python_models,
    )


@dataclass
class _Checked:
    """What a start needs before it opens anything: the checked exposure and tokens,
    the TLS credentials, the metrics and the grace period the closers share."""

    tokens: TokenStore | None
    credentials: grpc.ServerCredentials | None
    metrics: ServerMetrics
    tracing: Tracing | None
    grace: _Grace

    @classmethod
    def of(cls, settings: Settings, tracing: Tracing | None) -> _Checked:
        check_exposure(settings)
        try:
            tokens = load_tokens(settings)
        except InvalidInput as error:
            raise OSError(error.message) from None
        return cls(tokens, server_credentials(settings), ServerMetrics(), tracing, _Grace())


async def start_server(settings: Settings, *, tracing: Tracing | None = None) -> RunningServer:
    """Check the exposure, load the models, bind, start, and mark SERVING. With
    `tracing`, every call gets a span (see modelwire.tracing)."""
    checked = _Checked.of(settings, tracing)
    async with contextlib.AsyncExitStack() as stack:
        engine = await _open_engine(stack, settings, checked)
        datasets = _open_datasets(stack, settings)
        jobs = await _open_job_store(stack, datasets)
        training = await _open_training(stack, settings, engine, datasets, jobs)
        running = await _start_adapters(
            stack, settings, checked, engine, datasets, jobs, training, TrainingServicer(training)
        )
        running._closing = stack.pop_all()
    _log_started(running, settings, checked.tokens)
    return running


async def start_worker(
    settings: Settings, role: WorkerRole, *, tracing: Tracing | None = None
) -> RunningServer:
    """One of the processes of `serve --workers`: a server on the shared port, plus the
    Unix-socket server the other workers call, announcements of model loads to them,
    and training forwarded to the worker that trains (unless this is it)."""
    checked = _Checked.of(settings, tracing)
    async with contextlib.AsyncExitStack() as stack:
        engine = await _open_engine(stack, settings, checked)
        datasets = _open_datasets(stack, settings)
        jobs = await _open_job_store(stack, datasets)
        training = None
        if role.trains:
            training = await _open_training(stack, settings, engine, datasets, jobs)
        servicer = await _start_peers(stack, checked.grace, role, engine, training)
        running = await _start_adapters(
            stack, settings, checked, engine, datasets, jobs, training, servicer, reuse_port=True
        )
        running._closing = stack.pop_all()
    _log_side_servers(running, settings)
    log.info("ready: model(s) %s", _model_names(running))  # the supervisor says where, once
    return running


async def _start_adapters(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    checked: _Checked,
    engine: InferenceEngine,
    datasets: Datasets,
    jobs: JobStore,
    training: TrainingJobs | None,
    training_servicer: training_pb2_grpc.TrainingServiceServicer,
    *,
    reuse_port: bool = False,
) -> RunningServer:
    """The gRPC server, then the health port, REST and metrics as configured, then
    health SERVING. `reuse_port` for the workers of `serve --workers`, which share ports."""
    guard = CallGuard(checked.tokens, checked.metrics, checked.tracing)
    running = await _start_grpc(
        stack, checked, settings, reuse_port, engine, datasets, training, training_servicer, guard
    )
    await _start_health_port(stack, checked.grace, running, settings, reuse_port)

    async def refresh() -> None:
        await checked.metrics.refresh(engine, datasets, jobs)

    await _start_rest(stack, running, settings, checked, refresh, reuse_port)
    await _start_metrics(stack, running, settings, checked.metrics, refresh, reuse_port)
    _go_live(stack, running, settings)
    running._grace = checked.grace
    return running


async def _open_engine(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    checked: _Checked,
) -> InferenceEngine:
    tracing = checked.tracing
    on_timing = tracing.record_timing if tracing is not None else None
    engine = await start_engine(settings, checked.metrics.observer, on_timing)
    stack.push_async_callback(engine.close)
    return engine


def _open_datasets(stack: contextlib.AsyncExitStack, settings: Settings) -> Datasets:
    try:
        datasets = Datasets(settings.data_dir, settings.database_url)
    except Exception as error:
        if settings.database_url is None:
            raise
        raise OSError(f"cannot use the database at --database-url: {error}") from None
    stack.push_async_callback(datasets.close)
    return datasets


async def _open_job_store(stack: contextlib.AsyncExitStack, datasets: Datasets) -> JobStore:
    """The training jobs' records: every process reads their counts for /metrics."""
    store = JobStore(datasets.store.open_database())
    stack.push_async_callback(datasets.run, store.close)
    await datasets.run(store.create_schema)
    return store


async def _open_training(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    engine: InferenceEngine,
    datasets: Datasets,
    store: JobStore,
) -> TrainingJobs:
    training = await TrainingJobs.open(
        datasets,
        engine.models,
        settings.data_dir,
        store,
        max_running=settings.training_jobs,
        trainer=Trainer(threads=settings.training_threads),
        embed=_embedder(engine),
    )
    stack.push_async_callback(training.close)
    return training


async def _start_peers(
    stack: contextlib.AsyncExitStack,
    grace: _Grace,
    worker: WorkerRole,
    engine: InferenceEngine,
    training: TrainingJobs | None,
) -> training_pb2_grpc.TrainingServiceServicer:
    """The worker's Unix-socket server and its announcements to the others; what serves
    TrainingService on the public port (here, or a proxy to the worker that trains)."""
    servicer: training_pb2_grpc.TrainingServiceServicer
    if training is not None:
        servicer = TrainingServicer(training)
    else:
        proxy = TrainingProxyServicer(worker.address(0))
        stack.push_async_callback(proxy.close)
        servicer = proxy
    internal = grpc_app.internal_server(worker, engine, training)
    stack.push_async_callback(lambda: internal.stop(grace.left()))
    await internal.start()
    peers = PeerModels(worker)
    stack.push_async_callback(peers.close)
    engine.models.announcer = peers
    return servicer


async def _start_grpc(
    stack: contextlib.AsyncExitStack,
    checked: _Checked,
    settings: Settings,
    reuse_port: bool,
    engine: InferenceEngine,
    datasets: Datasets,
    training: TrainingJobs | None,
    training_servicer: training_pb2_grpc.TrainingServiceServicer,
    guard: CallGuard,
) -> RunningServer:
    """The public gRPC server with every service on it, bound and started."""
    server = grpc_app.new_server(settings, guard, reuse_port=reuse_port)
    stack.push_async_callback(lambda: server.stop(checked.grace.left()))
    health = HealthServicer()
    services = grpc_app.add_services(server, settings, engine, datasets, training_servicer, health)
    port, addresses = grpc_app.bind(server, settings.hosts, settings.port, checked.credentials)
    await server.start()
    return RunningServer(
        server, port, addresses, health, engine, datasets, training, guard, services
    )


async def _start_health_port(
    stack: contextlib.AsyncExitStack,
    grace: _Grace,
    running: RunningServer,
    settings: Settings,
    reuse_port: bool,
) -> None:
    if settings.health_port is None:
        return
    server = grpc_app.health_server(running.health, reuse_port=reuse_port)
    stack.push_async_callback(lambda: server.stop(grace.left()))
    _, running.health_addresses = grpc_app.bind(server, settings.hosts, settings.health_port, None)
    await server.start()
    running.health_server = server


async def _start_rest(
    stack: contextlib.AsyncExitStack,
    running: RunningServer,
    settings: Settings,
    checked: _Checked,
    refresh: Callable[[], Awaitable[None]],
    reuse_port: bool,
) -> None:
    port = rest_gateway_port(settings)
    if port is None:
        return
    from modelwire.rest.app import build_rest_app
    from modelwire.rest.server import RestServer

    app = build_rest_app(
        running.engine,
        max_body_bytes=settings.max_message_bytes,
        tokens=checked.tokens,
        metrics=checked.metrics if settings.metrics_port is None else None,
        refresh=refresh,
    )
    running.rest = await RestServer.start(
        app,
        settings.hosts,
        port,
        settings.grace_period_s,
        rest_tls_options(settings),
        reuse_port=reuse_port,
    )
    stack.push_async_callback(running.rest.stop)


async def _start_metrics(
    stack: contextlib.AsyncExitStack,
    running: RunningServer,
    settings: Settings,
    metrics: ServerMetrics,
    refresh: Callable[[], Awaitable[None]],
    reuse_port: bool,
) -> None:
    if settings.metrics_port is None:
        return
    if not _rest_installed():
        raise OSError(
            "--metrics-port serves over the REST gateway's HTTP server, which is not "
            "installed: pip install 'modelwire[rest]'"
        )
    from modelwire.rest.app import build_metrics_app
    from modelwire.rest.server import RestServer

    running.metrics_server = await RestServer.start(
        build_metrics_app(metrics, refresh),
        settings.hosts,
        settings.metrics_port,
        settings.grace_period_s,
        rest_tls_options(settings),
        reuse_port=reuse_port,
    )
    stack.push_async_callback(running.metrics_server.stop)


def rest_gateway_port(settings: Settings) -> int | None:
    """The REST gateway's port, or None for none: `--rest-port off`, or the default port
    where the `rest` extra is not installed (logged). OSError when --rest-port was given
    and the extra is missing."""
    if settings.rest_port is None or _rest_installed():
        return settings.rest_port
    if "rest_port" in settings.model_fields_set:
        raise OSError(
            "--rest-port needs the REST gateway, which is not installed: "
            "pip install 'modelwire[rest]' (or --rest-port off)"
        )
    log.info("no REST gateway: pip install 'modelwire[rest]' adds it")
    return None


def _rest_installed() -> bool:
    """Whether the `rest` extra (FastAPI and uvicorn) is installed."""
    return installed("fastapi") and installed("uvicorn")


def _go_live(stack: contextlib.AsyncExitStack, running: RunningServer, settings: Settings) -> None:
    """Health SERVING for the server, its services and its models; the repository
    poller, when asked for."""
    health, models = running.health, running.engine.models
    for name in ["", *running.services]:
        health.set(name, grpc_app.SERVING)
    models.add_listener(functools.partial(grpc_app.model_health, health))
    for model in models.names():
        health.set(model, grpc_app.SERVING if models.is_serving(model) else grpc_app.NOT_SERVING)
    if settings.poll_repository_s > 0:
        poller = asyncio.create_task(models.poll_forever(settings.poll_repository_s))
        stack.push_async_callback(_cancelled, poller)
        running._poller = poller


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _log_side_servers(running: RunningServer, settings: Settings) -> None:
    scheme = "https" if settings.tls else "http"
    if running.rest is not None:
        log.info(
            "REST gateway on %s (API docs at /docs)",
            ", ".join(f"{scheme}://{address}" for address in running.rest.addresses),
        )
    if running.health_addresses:
        log.info("gRPC health (plaintext) on %s", ", ".join(running.health_addresses))
    if running.metrics_server is not None:
        log.info(
            "metrics on %s",
            ", ".join(f"{scheme}://{a}/metrics" for a in running.metrics_server.addresses),
        )
    log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])


def _model_names(running: RunningServer) -> str:
    return ", ".join(running.engine.models.names()) or "(none)"


def _log_started(running: RunningServer, settings: Settings, tokens: TokenStore | None) -> None:
    _log_side_servers(running, settings)
    log.info(
        "modelwire serving model(s) %s on %s%s%s",
        _model_names(running),
        ", ".join(running.addresses),
        " (TLS" + (", client certificates required)" if settings.tls_client_ca else ")")
        if settings.tls
        else "",
        f" ({len(tokens)} token(s))" if tokens is not None else "",
    )


def _embedder(engine: InferenceEngine) -> Embedder:
    """Training's access to the served embedding models: vectors only."""

    async def embed(model: str, texts: Sequence[str]) -> np.ndarray:
        return (await engine.embed(model, None, texts)).vectors

    return embed


async def run_until_signal(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start_server(settings, tracing=from_environment())
    await stop.wait()
    log.info("shutting down: finishing calls in flight (up to %.1fs)", settings.grace_period_s)
    await running.stop(settings.grace_period_s)
    log.info("stopped")


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return."""
    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        runner.run(run_until_signal(settings))


def loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the server's event loop (None: asyncio's own). uvloop serves every call
    faster (benchmarks/per_call.py), so `auto` takes it wherever it is installed."""
    if settings.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if settings.event_loop == "auto":
            return None
        raise OSError("--event-loop uvloop needs the uvloop package (the `uvloop` extra)") from None
    return uvloop.new_event_loop
