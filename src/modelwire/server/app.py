"""Build, run and stop the gRPC server.

`build_server` wires the engine, the services, health and reflection into a grpc.aio
server bound to the configured addresses and returns it started, with its bound port
(port 0 picks a free one, which tests use), and the REST gateway over the same engine in
the same event loop. `serve` runs it until SIGTERM or SIGINT, then
drains: health goes NOT_SERVING, new calls are refused, calls in flight get the grace
period to finish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modelwire.api.compat import image_classifier_pb2_grpc
from modelwire.api.oip import grpc_predict_v2_pb2_grpc
from modelwire.api.v1 import (
    datasets_pb2_grpc,
    inference_pb2_grpc,
    models_pb2_grpc,
    speech_pb2_grpc,
    training_pb2_grpc,
    vision_pb2_grpc,
)
from modelwire.core.batching import BatchObserver
from modelwire.core.datasets import Datasets
from modelwire.core.images import DecodeLimits
from modelwire.core.inference import InferenceEngine, TimingHook
from modelwire.core.repository import DEFAULT_REPOSITORY
from modelwire.core.tokens import TokenStore
from modelwire.core.training.jobs import Embedder, TrainingJobs
from modelwire.errors import InvalidInput
from modelwire.metrics import ServerMetrics
from modelwire.rest.app import build_metrics_app, build_rest_app
from modelwire.rest.server import RestServer
from modelwire.server.calls import CallGuard
from modelwire.server.health import HealthServicer
from modelwire.server.peers import PeerModels, TrainingProxyServicer, WorkerRole
from modelwire.server.security import (
    check_exposure,
    load_tokens,
    rest_tls_options,
    server_credentials,
)
from modelwire.server.servicers.compat import SERVICE_NAME as COMPAT_SERVICE
from modelwire.server.servicers.compat import ImageClassifierServicer
from modelwire.server.servicers.datasets import SERVICE_NAME as DATASETS_SERVICE
from modelwire.server.servicers.datasets import DatasetServicer
from modelwire.server.servicers.inference import SERVICE_NAME as INFERENCE_SERVICE
from modelwire.server.servicers.inference import InferenceServicer
from modelwire.server.servicers.models import SERVICE_NAME as MODELS_SERVICE
from modelwire.server.servicers.models import ModelServicer
from modelwire.server.servicers.oip import SERVICE_NAME as OIP_SERVICE
from modelwire.server.servicers.oip import OipServicer
from modelwire.server.servicers.speech import SERVICE_NAME as SPEECH_SERVICE
from modelwire.server.servicers.speech import SpeechServicer
from modelwire.server.servicers.training import SERVICE_NAME as TRAINING_SERVICE
from modelwire.server.servicers.training import TrainingServicer
from modelwire.server.servicers.vision import SERVICE_NAME as VISION_SERVICE
from modelwire.server.servicers.vision import VisionServicer
from modelwire.settings import Settings
from modelwire.tracing import Tracing, from_environment

__all__ = ["RunningServer", "build_server", "serve", "start_engine"]

log = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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
    services: list[str] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    rest: RestServer | None = None
    metrics_server: RestServer | None = None
    #: The Unix-socket server the other workers call (see modelwire.server.peers).
    internal: grpc.aio.Server | None = None
    #: Health alone, in plaintext, for probes (settings.health_port).
    health_server: grpc.aio.Server | None = None
    health_addresses: list[str] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Sees every call: refuses new ones while the server drains.
    guard: CallGuard | None = None
    stopped: bool = False

    async def stop(self, grace: float | None) -> None:
        """Health NOT_SERVING, refuse new calls, let calls in flight finish within
        `grace` seconds (None: cancel them now). Safe to call more than once.

        New calls are refused UNAVAILABLE by our own call guard until the calls in
        flight have finished and no new call has come for a moment; only then is
        grpc's server stopped. grpc cancels the calls that reach it after its own
        shutdown began (CANCELLED, which clients do not retry): draining first leaves
        none to meet that, unless clients keep calling through the whole grace period."""
        if self.stopped:
            return
        self.stopped = True
        self.health.enter_graceful_shutdown()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = None if grace is None else loop.time() + grace
        # The HTTP servers drain themselves (within the grace period) meanwhile.
        http_stopping = [
            asyncio.ensure_future(http.stop())
            for http in (self.rest, self.metrics_server)
            if http is not None
        ]
        if self.guard is not None and grace is not None:
            self.guard.drain()
            await self.guard.wait_drained(grace)
        left = None if deadline is None else max(0.0, deadline - loop.time())
        stopping = [self.server.stop(left), *http_stopping]
        if self.health_server is not None:  # it said NOT_SERVING all along
            stopping.append(self.health_server.stop(left))
        await asyncio.gather(*stopping)
        if self.internal is not None:
            await self.internal.stop(left)
        for close in self.closers:
            await close()
        if self.training is not None:
            await self.training.close()
        await self.engine.close()
        await self.datasets.close()


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


def grpc_options(settings: Settings, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """Message, stream, keepalive and connection limits as grpc channel arguments.
    `reuse_port` for the workers of `serve --workers`, which share the port."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(settings.keepalive_min_ping_interval_s * 1000),
        ),
        ("grpc.http2.max_ping_strikes", settings.keepalive_max_ping_strikes),
        # Without this, a second server on the same port would start silently and
        # share its traffic; fail loudly instead.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    if settings.max_connection_age_s is not None:
        age_ms = int(settings.max_connection_age_s * 1000)
        options.append(("grpc.max_connection_age_ms", age_ms))
        options.append(("grpc.max_connection_age_grace_ms", int(settings.grace_period_s * 1000)))
    return options


async def build_server(
    settings: Settings, *, tracing: Tracing | None = None, worker: WorkerRole | None = None
) -> RunningServer:
    """Check the exposure, load the models, bind, start, and mark SERVING. With
    `tracing`, every call gets a span (see modelwire.tracing). With `worker`, this is one
    of the processes of `serve --workers` (see modelwire.server.peers)."""
    check_exposure(settings)
    try:
        tokens = load_tokens(settings)
    except InvalidInput as error:
        raise OSError(error.message) from None
    credentials = server_credentials(settings)
    metrics = ServerMetrics()
    engine = await start_engine(
        settings, metrics.observer, tracing.record_timing if tracing is not None else None
    )
    try:
        datasets = Datasets(settings.data_dir, settings.database_url)
    except Exception as error:
        await engine.close()
        if settings.database_url is None:
            raise
        raise OSError(f"cannot use the database at --database-url: {error}") from None
    training: TrainingJobs | None = None
    if worker is None or worker.trains:
        training = await TrainingJobs.open(
            datasets,
            engine.models,
            settings.data_dir,
            max_running=settings.training_jobs,
            threads=settings.training_threads,
            embed=_embedder(engine),
        )
    guard = CallGuard(tokens, metrics, tracing)
    server = grpc.aio.server(
        options=grpc_options(settings, reuse_port=worker is not None),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    guard.install(server)
    closers: list[Callable[[], Awaitable[None]]] = []
    if training is not None:
        training_servicer: training_pb2_grpc.TrainingServiceServicer = TrainingServicer(training)
    else:
        assert worker is not None
        proxy = TrainingProxyServicer(worker.address(0))
        closers.append(proxy.close)
        training_servicer = proxy
    services = _add_services(server, settings, engine, datasets, training_servicer)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services.append(HEALTH_SERVICE)
    if settings.reflection:
        services.append(reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server)

    async def refresh() -> None:
        await metrics.refresh(engine, datasets)

    running = RunningServer(server, 0, [], health_servicer, engine, datasets, training, services)
    running.closers = closers
    running.guard = guard
    try:
        if worker is not None:
            running.internal = await _start_internal(worker, engine, training)
            peers = PeerModels(worker)
            engine.models.announcer = peers
            closers.append(peers.close)
        running.port, running.addresses = _bind(server, settings.hosts, settings.port, credentials)
        await server.start()
        await _start_side_servers(running, settings, tokens, metrics, refresh, worker)
    except BaseException:
        await running.stop(None)
        raise
    for name in ["", *services]:
        health_servicer.set(name, SERVING)
    engine.models.add_listener(functools.partial(_model_health, health_servicer))
    for model in engine.models.names():
        health_servicer.set(model, SERVING if engine.models.is_serving(model) else NOT_SERVING)
    if settings.poll_repository_s > 0:
        running.background.append(
            asyncio.create_task(engine.models.poll_forever(settings.poll_repository_s))
        )
    _log_started(running, settings, tokens, worker)
    return running


async def _start_side_servers(
    running: RunningServer,
    settings: Settings,
    tokens: TokenStore | None,
    metrics: ServerMetrics,
    refresh: Callable[[], Awaitable[None]],
    worker: WorkerRole | None,
) -> None:
    """The plaintext health port, the REST gateway and the metrics port, as configured."""
    reuse_port = worker is not None
    if settings.health_port is not None:
        running.health_server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuse_port))])
        health_pb2_grpc.add_HealthServicer_to_server(running.health, running.health_server)
        _, running.health_addresses = _bind(
            running.health_server, settings.hosts, settings.health_port, None
        )
        await running.health_server.start()
    tls = rest_tls_options(settings)
    if settings.rest_port is not None:
        app = build_rest_app(
            running.engine,
            max_body_bytes=settings.max_message_bytes,
            tokens=tokens,
            metrics=metrics if settings.metrics_port is None else None,
            refresh=refresh,
        )
        running.rest = await RestServer.start(
            app,
            settings.hosts,
            settings.rest_port,
            settings.grace_period_s,
            tls,
            reuse_port=reuse_port,
        )
    if settings.metrics_port is not None:
        running.metrics_server = await RestServer.start(
            build_metrics_app(metrics, refresh),
            settings.hosts,
            settings.metrics_port,
            settings.grace_period_s,
            tls,
            reuse_port=reuse_port,
        )


def _log_started(
    running: RunningServer, settings: Settings, tokens: TokenStore | None, worker: WorkerRole | None
) -> None:
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
    models = ", ".join(running.engine.models.names()) or "(none)"
    if settings.event_loop != "asyncio":
        log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
    if worker is not None:
        log.info("ready: model(s) %s", models)  # the supervisor says where, once
        return
    log.info(
        "modelwire serving model(s) %s on %s%s%s",
        models,
        ", ".join(running.addresses),
        " (TLS" + (", client certificates required)" if settings.tls_client_ca else ")")
        if settings.tls
        else "",
        f" ({len(tokens)} token(s))" if tokens is not None else "",
    )


def _add_services(
    server: grpc.aio.Server,
    settings: Settings,
    engine: InferenceEngine,
    datasets: Datasets,
    training: training_pb2_grpc.TrainingServiceServicer,
) -> list[str]:
    image_classifier_pb2_grpc.add_ImageClassifierServicer_to_server(
        ImageClassifierServicer(engine), server
    )
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(
        InferenceServicer(engine, settings.stream_window), server
    )
    speech_pb2_grpc.add_SpeechServiceServicer_to_server(SpeechServicer(engine), server)
    vision_pb2_grpc.add_VisionServiceServicer_to_server(
        VisionServicer(engine, settings.stream_window), server
    )
    models_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(engine.models), server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        OipServicer(engine, settings.stream_window), server
    )
    datasets_pb2_grpc.add_DatasetServiceServicer_to_server(
        DatasetServicer(
            datasets,
            engine,
            max_examples=settings.max_upload_examples,
            max_example_bytes=settings.max_example_bytes,
            max_stream_bytes=settings.max_upload_bytes,
        ),
        server,
    )
    training_pb2_grpc.add_TrainingServiceServicer_to_server(training, server)
    return [
        COMPAT_SERVICE,
        INFERENCE_SERVICE,
        SPEECH_SERVICE,
        VISION_SERVICE,
        MODELS_SERVICE,
        OIP_SERVICE,
        DATASETS_SERVICE,
        TRAINING_SERVICE,
    ]


async def _start_internal(
    worker: WorkerRole, engine: InferenceEngine, training: TrainingJobs | None
) -> grpc.aio.Server:
    """The Unix-socket server the other workers call: ModelService (the loads they
    repeat here), and TrainingService on the worker that trains."""
    server = grpc.aio.server()
    models_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(engine.models, announce=False), server
    )
    if training is not None:
        training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(training), server)
    if not server.add_insecure_port(worker.address(worker.index)):
        raise OSError(f"cannot listen on {worker.address(worker.index)}")
    await server.start()
    return server


def _model_health(health: HealthServicer, model: str, serving: bool | None) -> None:
    if serving is None:
        health.clear(model)
    else:
        health.set(model, SERVING if serving else NOT_SERVING)


def _bind(
    server: grpc.aio.Server,
    hosts: list[str],
    port: int,
    credentials: grpc.ServerCredentials | None,
) -> tuple[int, list[str]]:
    addresses: list[str] = []
    for host in hosts:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
        except RuntimeError:
            bound = 0
        if not bound:
            if host == "::1" and addresses:
                log.info("IPv6 loopback is not available; serving on IPv4 only")
                continue
            raise OSError(f"cannot listen on {address}: is the port in use or the address wrong?")
        port = bound  # with port 0, every later address takes the port the first one got
        addresses.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return port, addresses


async def run_until_signal(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await build_server(settings, tracing=from_environment())
    await stop.wait()
    log.info("shutting down: finishing calls in flight (up to %.1fs)", settings.grace_period_s)
    await running.stop(settings.grace_period_s)
    log.info("stopped")


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return."""
    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        runner.run(run_until_signal(settings))


def loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the server's event loop (None: asyncio's own)."""
    if settings.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise OSError("--event-loop uvloop needs the uvloop package (the `uvloop` extra)") from None
    return uvloop.new_event_loop


def _embedder(engine: InferenceEngine) -> Embedder:
    """Training's access to the served embedding models: vectors only."""

    async def embed(model: str, texts: Sequence[str]) -> np.ndarray:
        return (await engine.embed(model, None, texts)).vectors

    return embed
