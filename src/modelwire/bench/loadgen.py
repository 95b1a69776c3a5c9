"""A closed-loop load generator for Classify and ClassifyStream.

`concurrency` requests are kept in flight; what completes during `duration_s` seconds,
after `warmup_s`, is counted. Unary mode runs that
many callers, each sending its next call when the previous one answers; stream mode
opens `streams` ClassifyStream calls and keeps concurrency/streams messages in flight on
each. Latency is measured per request (per message in stream mode), send to answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import grpc
import numpy as np

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc

__all__ = ["LoadResult", "run_load"]

Mode = Literal["unary", "stream"]
Record = Callable[[float, str | None], None]


@dataclass
class LoadResult:
    mode: str
    concurrency: int
    seconds: float
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "errors": self.errors,
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
        }


async def run_load(
    target: str,
    image: bytes,
    *,
    model: str = "",
    mode: Mode = "unary",
    concurrency: int = 8,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    streams: int = 4,
) -> LoadResult:
    """Drive the server at `target` and return what it answered in the measured window."""
    request = pb.ClassifyRequest(model=model, image=image)
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        await stub.Classify(request, wait_for_ready=True, timeout=60)
        result = LoadResult(mode, concurrency, duration_s)
        loop = asyncio.get_running_loop()
        start = loop.time()
        measure_from = start + warmup_s
        stop_at = measure_from + duration_s

        def record(sent: float, error: str | None) -> None:
            # Count what completes inside the window, whenever it was sent: with long
            # latencies, counting by send time would miss the window's last answers.
            now = loop.time()
            if not measure_from <= now <= stop_at:
                return
            if error is None:
                result.ok += 1
                result.latencies.append(now - sent)
            else:
                result.errors[error] = result.errors.get(error, 0) + 1

        if mode == "unary":
            await asyncio.gather(
                *(_caller(stub, request, stop_at, record) for _ in range(concurrency))
            )
        else:
            streams = max(1, min(streams, concurrency))
            depth = max(1, concurrency // streams)
            await asyncio.gather(
                *(_streamer(stub, request, depth, stop_at, record) for _ in range(streams))
            )
        return result


async def _caller(
    stub: pb_grpc.InferenceServiceStub,
    request: pb.ClassifyRequest,
    stop_at: float,
    record: Record,
) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        sent = loop.time()
        try:
            await stub.Classify(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            record(sent, error.code().name)
        else:
            record(sent, None)


async def _streamer(
    stub: pb_grpc.InferenceServiceStub,
    request: pb.ClassifyRequest,
    depth: int,
    stop_at: float,
    record: Record,
) -> None:
    loop = asyncio.get_running_loop()
    call = stub.ClassifyStream()
    sent_at: dict[str, float] = {}
    counter = 0

    async def send_one() -> None:
        nonlocal counter
        counter += 1
        key = str(counter)
        sent_at[key] = loop.time()
        await call.write(pb.ClassifyStreamRequest(id=key, request=request))

    for _ in range(depth):
        await send_one()
    sending = True
    while sent_at:
        response = await call.read()
        if response is grpc.aio.EOF:  # type: ignore[attr-defined]
            break
        sent = sent_at.pop(response.id)
        error = response.error.code if response.HasField("error") else None
        record(sent, None if error is None else f"code {error}")
        if sending and loop.time() < stop_at:
            await send_one()
        elif sending:
            sending = False
            await call.done_writing()
    if sending:
        await call.done_writing()
    await call.code()
