"""The gRPC adapter: the public server with every service on it, its channel options and
binding, the plaintext health port and the Unix-socket server of `serve --workers`.

`modelwire.assembly` puts these together with the core services and the REST gateway.
"""

from __future__ import annotations

import logging

import grpc
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
from modelwire.core.datasets import Datasets
from modelwire.core.inference import InferenceEngine
from modelwire.core.training.jobs import TrainingJobs
from modelwire.server.calls import CallGuard
from modelwire.server.health import HealthServicer
from modelwire.server.peers import WorkerRole
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

__all__ = [
    "HEALTH_SERVICE",
    "NOT_SERVING",
    "SERVING",
    "add_services",
    "bind",
    "grpc_options",
    "health_server",
    "internal_server",
    "model_health",
    "new_server",
]

log = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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
        # grpc counts a stream against max_concurrent_streams until its call is freed,
        # after the client has seen it end: a client within the limit, whose calls a
        # batch answers together, gets some of its next calls refused (UNAVAILABLE,
        # RST_STREAM REFUSED_STREAM). Off, the limit counts open streams, as HTTP/2 says.
        ("grpc.http.overload_protection", 0),
    ]
    if settings.max_connection_age_s is not None:
        age_ms = int(settings.max_connection_age_s * 1000)
        options.append(("grpc.max_connection_age_ms", age_ms))
        options.append(("grpc.max_connection_age_grace_ms", int(settings.grace_period_s * 1000)))
    return options


def new_server(settings: Settings, guard: CallGuard, *, reuse_port: bool) -> grpc.aio.Server:
    """An empty server with the configured limits, its handlers guarded by `guard`."""
    server = grpc.aio.server(
        options=grpc_options(settings, reuse_port=reuse_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    guard.install(server)
    return server


def add_services(
    server: grpc.aio.Server,
    settings: Settings,
    engine: InferenceEngine,
    datasets: Datasets,
    training: training_pb2_grpc.TrainingServiceServicer,
    health: HealthServicer,
) -> list[str]:
    """Every service on `server`, health and (as configured) reflection too; their names."""
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
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    services = [
        COMPAT_SERVICE,
        INFERENCE_SERVICE,
        SPEECH_SERVICE,
        VISION_SERVICE,
        MODELS_SERVICE,
        OIP_SERVICE,
        DATASETS_SERVICE,
        TRAINING_SERVICE,
        HEALTH_SERVICE,
    ]
    if settings.reflection:
        services.append(reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server)
    return services


def health_server(health: HealthServicer, *, reuse_port: bool) -> grpc.aio.Server:
    """A server for health alone (the plaintext health port), sharing `health`."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuse_port))])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server


def internal_server(
    worker: WorkerRole, engine: InferenceEngine, training: TrainingJobs | None
) -> grpc.aio.Server:
    """The Unix-socket server the other workers call, bound, not started: ModelService
    (the loads they repeat here), and TrainingService on the worker that trains."""
    server = grpc.aio.server()
    models_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(engine.models, announce=False), server
    )
    if training is not None:
        training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(training), server)
    if not server.add_insecure_port(worker.address(worker.index)):
        raise OSError(f"cannot listen on {worker.address(worker.index)}")
    return server


def model_health(health: HealthServicer, model: str, serving: bool | None) -> None:
    if serving is None:
        health.clear(model)
    else:
        health.set(model, SERVING if serving else NOT_SERVING)


def bind(
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
