"""OpenTelemetry tracing, with the `tracing` extra installed.

One server span per gRPC call, continuing the caller's trace when the call carries W3C
trace context (`traceparent` metadata); under it, for each image, spans for the time it
waited in its model's queue, for decoding and preprocessing its batch, and for the
batch's inference. The exporter is chosen the standard way, by environment:
OTEL_TRACES_EXPORTER (console, otlp, ...; unset or "none": no tracing), with the
exporter's own OTEL_EXPORTER_* settings, and OTEL_SERVICE_NAME /
OTEL_RESOURCE_ATTRIBUTES for the resource.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from modelwire.core.batching import Timing

__all__ = ["Tracing", "from_environment"]

log = logging.getLogger(__name__)


class Tracing:
    """Spans for calls and the work inside them, from one TracerProvider."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import propagate, trace

        self._trace = trace
        self._propagate = propagate
        self._tracer = provider.get_tracer("modelwire")

    def start_call(self, full_method: str, metadata: Mapping[str, str]) -> tuple[Any, Any]:
        """Start the server span of a call and make it current: (span, token to detach)."""
        from opentelemetry import context

        service, _, method = full_method.lstrip("/").rpartition("/")
        parent = self._propagate.extract(dict(metadata))
        span = self._tracer.start_span(
            full_method.lstrip("/"),
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        token = context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def end_call(self, span: Any, token: Any, code: str, code_number: int) -> None:
        from opentelemetry import context

        span.set_attribute("rpc.grpc.status_code", code_number)
        if code != "OK":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, code))
        span.end()
        context.detach(token)

    def record_timing(self, model: str, version: int, timing: Timing) -> None:
        """Child spans of the current span for one input's queue wait, decode and
        inference (their times are known only afterwards)."""
        to_epoch_ns = time.time_ns() - int(asyncio.get_running_loop().time() * 1e9)

        def span(name: str, start: float, end: float) -> None:
            child = self._tracer.start_span(
                name,
                start_time=to_epoch_ns + int(start * 1e9),
                attributes={"modelwire.model": model, "modelwire.version": version},
            )
            child.end(end_time=to_epoch_ns + int(end * 1e9))

        span("queue wait", timing.queued_at, timing.started)
        decoded = timing.started + timing.phases.get("decode", 0.0)
        span("decode", timing.started, decoded)
        span("inference", decoded, decoded + timing.phases.get("inference", 0.0))


def from_environment() -> Tracing | None:
    """Tracing as the OTEL_* environment asks, or None."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip()
    if names in ("", "none") or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed: "
            "pip install 'modelwire[tracing]'"
        )
        return None
    provider = TracerProvider(resource=Resource.create())
    for name in (n.strip() for n in names.split(",")):
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning("no OpenTelemetry trace exporter named %r is installed", name)
            continue
        exporter = next(iter(found)).load()
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    log.info("tracing on: exporter(s) %s", names)
    return Tracing(provider)
