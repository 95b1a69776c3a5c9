"""Operating a server: request ids and access logs, metrics after known traffic,
overload refused fast, graceful shutdown under load."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelwire.api.v1 import datasets_pb2, datasets_pb2_grpc
from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from modelwire.logs import JsonFormatter
from modelwire.server.app import grpc_options
from modelwire.settings import load_settings
from tests.conftest import ServerFactory, rest_url, start_serve, stop_serve
from tests.images import digit_bytes, noise_picture
from tests.models import add_model
from tests.waiting import wait_until


async def test_request_ids_are_echoed_and_every_call_is_logged(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(rest_port=0)
    caplog.set_level(logging.INFO, logger="modelwire.access")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        call = stub.Classify(
            pb.ClassifyRequest(image=digit_bytes(2)), metadata=(("x-request-id", "abc-123"),)
        )
        await call
        assert ("x-request-id", "abc-123") in tuple(await call.trailing_metadata())
        bad = stub.Classify(pb.ClassifyRequest(image=b"junk"))
        with pytest.raises(grpc.aio.AioRpcError):
            await bad
        generated = dict(await bad.trailing_metadata())["x-request-id"]
        assert len(generated) == 16
    async with httpx.AsyncClient(base_url=rest_url(server)) as http:
        answer = await http.get("/v2/health/live", headers={"x-request-id": "rest-7"})
        assert answer.headers["x-request-id"] == "rest-7"
    records = [r for r in caplog.records if r.name == "modelwire.access"]
    by_id = {getattr(r, "request_id", ""): r for r in records}
    assert by_id["abc-123"].code == "OK"  # type: ignore[attr-defined]
    assert by_id["abc-123"].method == "/modelwire.api.v1.InferenceService/Classify"  # type: ignore[attr-defined]
    assert by_id[generated].code == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
    assert by_id["rest-7"].code == 200  # type: ignore[attr-defined]
    assert all(getattr(r, "peer", "") for r in records)
    line = json.loads(JsonFormatter().format(by_id["abc-123"]))
    assert line["request_id"] == "abc-123"
    assert line["code"] == "OK"
    assert line["duration_ms"] > 0
    assert {"time", "level", "logger", "message", "peer", "method"} <= set(line)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_known_traffic(start_server: ServerFactory) -> None:
    server = await start_server(rest_port=0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        for digit in (1, 2, 3):
            await stub.Classify(pb.ClassifyRequest(image=digit_bytes(digit)))
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Classify(pb.ClassifyRequest(image=b"junk"))
        data = datasets_pb2_grpc.DatasetServiceStub(channel)
        await data.CreateDataset(datasets_pb2.CreateDatasetRequest(name="counted"))
    async with httpx.AsyncClient(base_url=rest_url(server)) as http:
        await http.post(
            "/v1/models/digits:classify",
            content=digit_bytes(4),
            headers={"content-type": "image/png"},
        )
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    found = samples(scraped.text)
    classify = (("method", "Classify"), ("protocol", "grpc"),
                ("service", "modelwire.api.v1.InferenceService"))  # fmt: skip
    assert found[("modelwire_requests_total", (("code", "OK"), *classify))] == 3
    assert found[("modelwire_requests_total", (("code", "INVALID_ARGUMENT"), *classify))] == 2
    rest = (("code", "200"), ("method", "classify"), ("protocol", "http"), ("service", "rest"))
    assert found[("modelwire_requests_total", rest)] == 1
    assert found[("modelwire_request_duration_seconds_count", classify)] == 5
    version = (("model", "digits"), ("version", "1"))
    # 3 good and 2 bad gRPC pictures (decoded in their batches) and 1 REST picture:
    assert found[("modelwire_batch_size_count", version)] == 6
    assert found[("modelwire_queue_wait_seconds_count", version)] == 6
    assert found[("modelwire_batch_duration_seconds_count", version)] == 6
    # Only the batches with a decodable picture reached the model:
    assert found[("modelwire_inference_duration_seconds_count", version)] == 4
    assert found[("modelwire_queue_depth", version)] == 0
    assert found[("modelwire_model_state", (("model", "digits"), ("state", "READY")))] == 1
    assert found[("modelwire_model_state", (("model", "digits"), ("state", "FAILED")))] == 0
    assert found[("modelwire_dataset_examples", (("dataset", "counted"),))] == 0
    assert found[("modelwire_training_jobs", (("state", "RUNNING"),))] == 0
    assert found[("modelwire_in_flight_requests", (("protocol", "grpc"),))] == 0


async def test_overload_is_refused_fast_while_admitted_calls_succeed(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    add_model(tmp_path, "slow", tables="[batching]\nmax_batch_size = 1\n")
    server = await start_server(model_repositories=[tmp_path], max_concurrent_rpcs=3)
    finished: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)

        async def one() -> grpc.StatusCode:
            try:
                await stub.Classify(pb.ClassifyRequest(model="slow", image=noise_picture()))
            except grpc.aio.AioRpcError as error:
                finished.append(error.code().name)
                return error.code()
            finished.append("OK")
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(one() for _ in range(12)))
    assert codes.count(grpc.StatusCode.OK) >= 3
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    # The refusals came back before the admitted calls had finished their work.
    assert finished.index("RESOURCE_EXHAUSTED") < finished.index("OK")


async def test_graceful_shutdown_under_load_fails_no_call(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    add_model(tmp_path, "slow", tables="[batching]\nmax_batch_size = 4\n")
    server = await start_server(model_repositories=[tmp_path])
    batcher = server.engine.models.resolve("slow").batcher
    assert batcher is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        calls = [
            asyncio.ensure_future(
                stub.Classify(pb.ClassifyRequest(model="slow", image=noise_picture(1500)))
            )
            for _ in range(16)
        ]
        # Every call has reached the engine (in flight, not still arriving) or finished.
        await wait_until(lambda: server.engine.in_flight + sum(c.done() for c in calls) == 16)
        assert server.engine.in_flight > 0
        await server.stop(30)
        replies = await asyncio.gather(*calls)
    assert len(replies) == 16
    assert all(reply.model == "slow" for reply in replies)


async def test_metrics_on_their_own_port(start_server: ServerFactory) -> None:
    server = await start_server(rest_port=0, metrics_port=0)
    assert server.metrics_server is not None
    async with httpx.AsyncClient() as http:
        scraped = await http.get(f"http://127.0.0.1:{server.metrics_server.port}/metrics")
        assert scraped.status_code == 200
        assert "modelwire_requests_total" in scraped.text
        assert (await http.get(f"{rest_url(server)}/metrics")).status_code == 404


async def test_calls_within_the_stream_limit_are_never_refused() -> None:
    # A client keeping as many calls in flight as the connection allows, answered in
    # batches that end together, starts its next calls before the server has freed the
    # last ones: none may be refused (grpc's overload protection refused hundreds a
    # second here, UNAVAILABLE). The server runs in its own process, as in production:
    # sharing the test's event loop, it would free each call before the next arrives.
    limit = 8
    serve = start_serve("--port", "0", "--max-concurrent-streams", str(limit))
    image = digit_bytes(3)
    failed: list[str] = []
    try:
        async with grpc.aio.insecure_channel(serve.target) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)

            async def caller() -> None:
                for _ in range(100):
                    try:
                        await stub.Classify(pb.ClassifyRequest(image=image))
                    except grpc.aio.AioRpcError as error:
                        failed.append(f"{error.code().name}: {error.details()}")

            await asyncio.gather(*(caller() for _ in range(limit)))
    finally:
        stop_serve(serve)
    assert failed == []


def test_limits_become_grpc_options(tmp_path: Path) -> None:
    settings = load_settings(
        max_concurrent_streams=7,
        keepalive_min_ping_interval_s=2.5,
        keepalive_max_ping_strikes=3,
        max_connection_age_s=60,
        grace_period_s=5,
        max_message_bytes=4096,
    )
    options = dict(grpc_options(settings))
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 2500
    assert options["grpc.http2.max_ping_strikes"] == 3
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert options["grpc.max_connection_age_grace_ms"] == 5_000
    assert options["grpc.max_receive_message_length"] == 4096
    assert options["grpc.http.overload_protection"] == 0
    assert "grpc.max_connection_age_ms" not in dict(grpc_options(load_settings()))
