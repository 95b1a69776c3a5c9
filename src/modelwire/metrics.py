"""Prometheus metrics of one server, in a registry of its own.

Calls are counted by the gRPC interceptor and the REST middleware; batches by each model
version's batcher (through `observer`); states that change on their own (queue depth,
model states, training jobs, dataset sizes) are read when /metrics is scraped
(`refresh`). Names follow Prometheus conventions: `modelwire_` prefix, base units
(`_seconds`, `_bytes`), `_total` for counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelwire.core.batching import BatchObserver
from modelwire.core.models import ModelState

if TYPE_CHECKING:
    from modelwire.core.datasets import Datasets
    from modelwire.core.inference import InferenceEngine
    from modelwire.core.training.jobs import TrainingJobs

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_JOB_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelwire_requests",
            "Calls answered, by protocol, service, method and status code.",
            ["protocol", "service", "method", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "modelwire_request_duration_seconds",
            "Time from a call's arrival to its answer.",
            ["protocol", "service", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "modelwire_in_flight_requests", "Calls being served now.", ["protocol"], registry=r
        )
        self.queue_wait = Histogram(
            "modelwire_queue_wait_seconds",
            "Time an input waited in its model's queue before its batch ran.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "modelwire_batch_duration_seconds",
            "Time one batch took: decoding, preprocessing and inference.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "modelwire_inference_duration_seconds",
            "Time the model itself took for one batch (ONNX Runtime).",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelwire_batch_size",
            "Inputs per batch run.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelwire_queue_depth", "Inputs waiting now.", ["model", "version"], registry=r
        )
        self.model_state = Gauge(
            "modelwire_model_state",
            "1 for the state each model is in, 0 for the others.",
            ["model", "state"],
            registry=r,
        )
        self.training_jobs = Gauge(
            "modelwire_training_jobs", "Training jobs by state.", ["state"], registry=r
        )
        self.dataset_examples = Gauge(
            "modelwire_dataset_examples", "Examples per dataset.", ["dataset"], registry=r
        )
        self.dataset_bytes = Gauge(
            "modelwire_dataset_bytes", "Image bytes per dataset.", ["dataset"], registry=r
        )

    def observer(self, model: str, version: int) -> BatchObserver:
        """The observer a model version's batcher reports its batches to."""
        labels = (model, str(version))
        wait = self.queue_wait.labels(*labels)
        took = self.batch_seconds.labels(*labels)
        size = self.batch_size.labels(*labels)
        inference = self.inference_seconds.labels(*labels)

        def observe(
            count: int, waits: Sequence[float], seconds: float, phases: dict[str, float]
        ) -> None:
            size.observe(count)
            took.observe(seconds)
            if "inference" in phases:
                inference.observe(phases["inference"])
            for waited in waits:
                wait.observe(waited)

        return observe

    async def refresh(
        self,
        engine: InferenceEngine,
        training: TrainingJobs | None = None,
        datasets: Datasets | None = None,
    ) -> None:
        """Read the states that change on their own, just before a scrape."""
        models = engine.models
        self.queue_depth.clear()
        self.model_state.clear()
        for status in models.statuses():
            for model_state in ModelState:
                self.model_state.labels(status.name, model_state.value).set(
                    1 if status.state == model_state else 0
                )
            for served in models.served_versions(status.name):
                if served.batcher is not None:
                    self.queue_depth.labels(status.name, str(served.version)).set(
                        served.batcher.queue_depth
                    )
        if training is not None:
            jobs = training.list_jobs()
            for job_state in _JOB_STATES:
                self.training_jobs.labels(job_state).set(sum(j.state == job_state for j in jobs))
        if datasets is not None:
            infos = await datasets.run(datasets.store.list)
            self.dataset_examples.clear()
            self.dataset_bytes.clear()
            for info in infos:
                self.dataset_examples.labels(info.name).set(info.examples)
                self.dataset_bytes.labels(info.name).set(info.total_bytes)

    def render(self) -> bytes:
        return generate_latest(self.registry)
