"""Prometheus metrics of one server, in a registry of its own.

Calls are counted by the gRPC call guard and the REST middleware; batches by each model
version's batcher (through `observer`); states that change on their own (queue depth,
model states, training jobs, dataset sizes) are read when /metrics is scraped
(`refresh`). Names follow Prometheus conventions: `modelwire_` prefix, base units
(`_seconds`, `_bytes`), `_total` for counters.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from modelwire.core.batching import BatchObserver
from modelwire.core.models import ModelState

if TYPE_CHECKING:
    from modelwire.core.datasets import Datasets
    from modelwire.core.inference import InferenceEngine
    from modelwire.core.training.store import JobStore

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


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
            "modelwire_in_flight_requests",
            "Calls being served now.",
            ["protocol"],
            registry=r,
            multiprocess_mode="livesum",
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
        # States that change on their own are read at scrape time into a collector of
        # their own: in multiprocess mode they must not go through per-process files,
        # which keep a dataset deleted since, or a model state that changed, forever.
        self.states = _StateCollector()
        r.register(self.states)

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
        datasets: Datasets | None = None,
        jobs: JobStore | None = None,
    ) -> None:
        """Read the states that change on their own, just before a scrape."""
        models = engine.models
        model_state = GaugeMetricFamily(
            "modelwire_model_state",
            "1 for the state each model is in, 0 for the others.",
            labels=["model", "state"],
        )
        queue_depth = GaugeMetricFamily(
            "modelwire_queue_depth",
            "Inputs waiting now (in the process that answered the scrape).",
            labels=["model", "version"],
        )
        for status in models.statuses():
            for state in ModelState:
                model_state.add_metric([status.name, state.value], status.state == state)
            for served in models.served_versions(status.name):
                if served.batcher is not None:
                    queue_depth.add_metric(
                        [status.name, str(served.version)], served.batcher.queue_depth
                    )
        families: list[Metric] = [model_state, queue_depth]
        if datasets is not None:
            if jobs is not None:
                by_state = GaugeMetricFamily(
                    "modelwire_training_jobs", "Training jobs by state.", labels=["state"]
                )
                for job_state, count in (await datasets.run(jobs.counts)).items():
                    by_state.add_metric([job_state.value], count)
                families.append(by_state)
            examples = GaugeMetricFamily(
                "modelwire_dataset_examples", "Examples per dataset.", labels=["dataset"]
            )
            size = GaugeMetricFamily(
                "modelwire_dataset_bytes", "Image bytes per dataset.", labels=["dataset"]
            )
            for info in await datasets.run(datasets.store.list):
                examples.add_metric([info.name], info.examples)
                size.add_metric([info.name], info.total_bytes)
            families += [examples, size]
        self.states.families = families

    def render(self) -> bytes:
        """The exposition text: this process's metrics, or with several worker processes
        (PROMETHEUS_MULTIPROC_DIR set), every live and past worker's summed."""
        if not multiprocess_dir():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.states)
        return generate_latest(registry)


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def multiprocess_dir() -> str | None:
    """Where worker processes keep their metric files, when there are several."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
