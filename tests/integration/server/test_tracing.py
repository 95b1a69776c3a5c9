"""OpenTelemetry: a server span per call, continuing the caller's trace, with child spans
for queue wait, decoding and inference, exported to an in-memory exporter."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelwire import assembly
from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from modelwire.settings import load_settings
from modelwire.tracing import Tracing, from_environment
from tests.images import digit_bytes
from tests.requirements import need_module

sdk = need_module("opentelemetry.sdk.trace", 'OpenTelemetry\'s SDK (pip install -e ".[tracing]")')
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)


def attributes(span: Any) -> Mapping[str, Any]:
    assert span.attributes is not None
    found: Mapping[str, Any] = span.attributes
    return found


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def test_spans_for_a_call_and_its_work(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = load_settings(hosts=["127.0.0.1"], port=0, rest_port="off", data_dir=tmp_path)
    server = await assembly.start_server(settings, tracing=Tracing(provider))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
            await stub.Classify(
                pb.ClassifyRequest(image=digit_bytes(6)), metadata=(("traceparent", traceparent),)
            )
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Classify(pb.ClassifyRequest(image=b"junk"))
    finally:
        await server.stop(None)
    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.name == "modelwire.api.v1.InferenceService/Classify"]
    assert len(calls) == 2
    traced, failed = sorted(calls, key=lambda s: s.start_time or 0)
    assert f"{traced.context.trace_id:032x}" == TRACE_ID  # the caller's trace continues
    assert traced.parent is not None
    assert f"{traced.parent.span_id:016x}" == PARENT_ID
    assert attributes(traced)["rpc.grpc.status_code"] == 0
    assert attributes(failed)["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
    assert not failed.status.is_ok
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == traced.context.span_id
    ]
    assert sorted(s.name for s in children) == ["decode", "inference", "queue wait"]
    for child in children:
        assert child.context.trace_id == traced.context.trace_id
        assert (traced.start_time or 0) <= (child.start_time or 0)
        assert (child.start_time or 0) <= (child.end_time or 0) <= (traced.end_time or 0)
        assert attributes(child)["modelwire.model"] == "digits"


def test_tracing_is_off_unless_the_environment_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert from_environment() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert from_environment() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert isinstance(from_environment(), Tracing)
