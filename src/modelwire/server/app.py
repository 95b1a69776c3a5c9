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
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modelwire.api.compat import image_classifier_pb2_grpc
from modelwire.api.oip import grpc_predict_v2_pb2_grpc
from modelwire.api.v1 import (
    datasets_pb2_grpc,
    inference_pb2_grpc,
    models_pb2_grpc,
    training_pb2_grpc,
)
from modelwire.core.datasets import Datasets
from modelwire.core.images import DecodeLimits
from modelwire.core.inference import InferenceEngine
from modelwire.core.repository import DEFAULT_REPOSITORY
from modelwire.core.training.jobs import TrainingJobs
from modelwire.rest.app import build_rest_app
from modelwire.rest.server import RestServer
from modelwire.server.health import HealthServicer
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
from modelwire.server.servicers.training import SERVICE_NAME as TRAINING_SERVICE
from modelwire.server.servicers.training import TrainingServicer
from modelwire.settings import Settings

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
    training: TrainingJobs
    services: list[str] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    rest: RestServer | None = None
    stopped: bool = False

    async def stop(self, grace: float | None) -> None:
        """Health NOT_SERVING, refuse new calls, let calls in flight finish within
        `grace` seconds (None: cancel them now). Safe to call more than once."""
        if self.stopped:
            return
        self.stopped = True
        self.health.enter_graceful_shutdown()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        stopping = [self.server.stop(grace)]
        if self.rest is not None:
            stopping.append(self.rest.stop())
        await asyncio.gather(*stopping)
        await self.training.close()
        await self.engine.close()
        await self.datasets.close()


async def start_engine(settings: Settings) -> InferenceEngine:
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
    )


async def build_server(settings: Settings) -> RunningServer:
    """Load the models, bind, start, and mark SERVING."""
    engine = await start_engine(settings)
    datasets = Datasets(settings.data_dir)
    training = await TrainingJobs.open(
        datasets,
        engine.models,
        settings.data_dir,
        max_running=settings.training_jobs,
        threads=settings.training_threads,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # Without this, a second server on the same port would start silently and
            # share its traffic; fail loudly instead.
            ("grpc.so_reuseport", 0),
        ]
    )
    image_classifier_pb2_grpc.add_ImageClassifierServicer_to_server(
        ImageClassifierServicer(engine), server
    )
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(
        InferenceServicer(engine, settings.stream_window), server
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
        ),
        server,
    )
    training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(training), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [
        COMPAT_SERVICE,
        INFERENCE_SERVICE,
        MODELS_SERVICE,
        OIP_SERVICE,
        DATASETS_SERVICE,
        TRAINING_SERVICE,
        HEALTH_SERVICE,
    ]
    if settings.reflection:
        services.append(reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server)

    port, addresses = _bind(server, settings.hosts, settings.port)
    await server.start()
    rest = None
    if settings.rest_port:
        app = build_rest_app(engine, max_body_bytes=settings.max_message_bytes)
        try:
            rest = await RestServer.start(
                app, settings.hosts, settings.rest_port, settings.grace_period_s
            )
        except BaseException:
            await server.stop(None)
            await training.close()
            await engine.close()
            await datasets.close()
            raise
    for name in ["", *services]:
        health_servicer.set(name, SERVING)
    engine.models.add_listener(functools.partial(_model_health, health_servicer))
    for model in engine.models.names():
        health_servicer.set(model, SERVING if engine.models.is_serving(model) else NOT_SERVING)
    background = []
    if settings.poll_repository_s > 0:
        background.append(
            asyncio.create_task(engine.models.poll_forever(settings.poll_repository_s))
        )
    if rest is not None:
        log.info(
            "REST gateway on %s (API docs at /docs)",
            ", ".join(f"http://{address}" for address in rest.addresses),
        )
    log.info(
        "modelwire serving model(s) %s on %s",
        ", ".join(engine.models.names()) or "(none)",
        ", ".join(addresses),
    )
    return RunningServer(
        server,
        port,
        addresses,
        health_servicer,
        engine,
        datasets,
        training,
        services,
        background,
        rest,
    )


def _model_health(health: HealthServicer, model: str, serving: bool | None) -> None:
    if serving is None:
        health.clear(model)
    else:
        health.set(model, SERVING if serving else NOT_SERVING)


def _bind(server: grpc.aio.Server, hosts: list[str], port: int) -> tuple[int, list[str]]:
    addresses: list[str] = []
    for host in hosts:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
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
    running = await build_server(settings)
    await stop.wait()
    log.info("shutting down: finishing calls in flight (up to %.1fs)", settings.grace_period_s)
    await running.stop(settings.grace_period_s)
    log.info("stopped")


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return."""
    asyncio.run(run_until_signal(settings))
