"""A closed-loop load generator for modelwire's APIs, gRPC and REST.

`concurrency` requests are kept in flight; what completes during `duration_s` seconds,
after `warmup_s`, is counted (or, with `count`, the first `count` answers, no warm-up).
Each mode runs that many callers, each sending its next request when the previous one
answers, except stream mode, which opens `streams` ClassifyStream calls and keeps
concurrency/streams messages in flight on each. With `rate`, requests are instead sent
at that fixed rate (an open loop, at most `concurrency` in flight; a request that cannot
go out on time because all are busy counts as "late"), and latency is measured from
when each request was due, so a slow server cannot hide its queue. Latency is measured
per request (per message in stream mode), send to answer.

Modes and their payloads:
- unary: gRPC Classify with the image; stream: gRPC ClassifyStream with the image;
- oip: Open Inference Protocol gRPC ModelInfer with an FP32 tensor (raw contents);
- rest: POST /v1/models/{model}:classify with the image as the body;
- rest-json: the same with JSON {"image_b64": ...};
- oip-rest: POST /v2/models/{model}/infer with the FP32 tensor as JSON.
HTTP modes need aiohttp (the `bench` extra): a client fast enough not to be what is
measured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import json
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import grpc
import numpy as np

from modelwire.api.oip import grpc_predict_v2_pb2 as oip_pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc

__all__ = ["MODES", "TENSOR_MODES", "LoadResult", "Mode", "run_load"]

Mode = Literal["unary", "stream", "oip", "rest", "rest-json", "oip-rest"]
MODES: tuple[str, ...] = get_args(Mode)
#: Modes whose payload is a preprocessed FP32 tensor [N, ...] rather than image bytes.
TENSOR_MODES = ("oip", "oip-rest")

Record = Callable[[float, str | None], None]
Send = Callable[[], Awaitable[str | None]]  # one request; None or the error's name


@dataclass
class LoadResult:
    mode: str
    concurrency: int
    seconds: float
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    #: Every request answered, warm-up and tail included: what the server did in the run.
    answered: int = 0
    #: The fixed send rate, for open-loop runs.
    rate: float | None = None

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate_per_s": self.rate,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "errors": self.errors,
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p90_ms": round(self.percentile_ms(90), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "max_ms": round(self.percentile_ms(100), 3),
            "answered": self.answered,
        }


async def run_load(
    target: str,
    payload: bytes | np.ndarray,
    *,
    model: str = "",
    mode: Mode = "unary",
    concurrency: int = 8,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    streams: int = 4,
    count: int | None = None,
    rate: float | None = None,
    connections: int = 1,
) -> LoadResult:
    """Drive the server at `target` (HOST:PORT, gRPC or REST as the mode says) and return
    what it answered in the measured window. `payload` is the encoded image, or for the
    tensor modes the FP32 tensor. gRPC modes spread their calls over `connections`
    connections (several reach several worker processes of one port); HTTP modes open
    as many as they have requests in flight."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if (mode in TENSOR_MODES) != isinstance(payload, np.ndarray):
        raise ValueError(f"mode {mode} takes {'a tensor' if mode in TENSOR_MODES else 'bytes'}")
    if mode.startswith(("rest", "oip-rest")) and not model:
        raise ValueError("REST modes need the model's name")
    if rate is not None and (mode == "stream" or rate <= 0):
        raise ValueError("a fixed rate is for the unary modes, and must be above 0")
    if count is not None and count < 1:
        raise ValueError("count must be at least 1")
    if connections < 1:
        raise ValueError("connections must be at least 1")
    window = _Window(mode, concurrency, duration_s, warmup_s, count, rate)
    if mode in ("unary", "stream"):
        assert isinstance(payload, bytes)
        await _classify_load(target, payload, model, mode, streams, connections, window)
    elif mode == "oip":
        assert isinstance(payload, np.ndarray)
        await _oip_load(target, payload, model, connections, window)
    else:
        await _http_load(target, payload, model, mode, window)
    return window.result


class _Window:
    """The measured window, and the record of what completed inside it."""

    def __init__(
        self,
        mode: str,
        concurrency: int,
        duration_s: float,
        warmup_s: float,
        count: int | None = None,
        rate: float | None = None,
    ) -> None:
        self.result = LoadResult(mode, concurrency, duration_s, rate=rate)
        self.concurrency = concurrency
        self._duration_s = duration_s
        self._warmup_s = 0.0 if count is not None else warmup_s
        self._count = count
        self._rate = rate
        #: Requests sent and not yet answered.
        self.in_flight = 0
        self._started = 0.0
        self.stop_at = 0.0
        self._measure_from = 0.0

    def start(self) -> None:
        now = asyncio.get_running_loop().time()
        self._started = now
        self._measure_from = now + self._warmup_s
        self.stop_at = (
            math.inf if self._count is not None else self._measure_from + self._duration_s
        )

    @property
    def sending(self) -> bool:
        if self._count is not None:
            return self.result.answered + self.in_flight < self._count
        return asyncio.get_running_loop().time() < self.stop_at

    def record(self, sent: float, error: str | None) -> None:
        # Count what completes inside the window, whenever it was sent: with long
        # latencies, counting by send time would miss the window's last answers.
        now = asyncio.get_running_loop().time()
        self.result.answered += 1
        if self._count is not None:
            self.result.seconds = now - self._started
        elif not self._measure_from <= now <= self.stop_at:
            return
        if error is None:
            self.result.ok += 1
            self.result.latencies.append(now - sent)
        else:
            self.result.errors[error] = self.result.errors.get(error, 0) + 1

    async def run_callers(self, send: Send) -> None:
        self.start()
        if self._rate is not None:
            await self._open_loop(send, self._rate)
            return
        await asyncio.gather(*(self._caller(send) for _ in range(self.concurrency)))

    async def _caller(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while self.sending:
            sent = loop.time()
            self.in_flight += 1
            try:
                error = await send()
            finally:
                self.in_flight -= 1
            self.record(sent, error)

    async def _open_loop(self, send: Send, rate: float) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one(due: float) -> None:
            try:
                self.record(due, await send())
            finally:
                self.in_flight -= 1
                slots.release()

        due = loop.time()
        while self.sending:
            await asyncio.sleep(max(0.0, due - loop.time()))
            if slots.locked():
                self.record(due, "late")  # every request slot busy: the server fell behind
            else:
                await slots.acquire()
                self.in_flight += 1
                task = asyncio.create_task(one(due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            due += 1 / rate
        await asyncio.gather(*tasks)


async def _grpc_call(call: Coroutine[Any, Any, object]) -> str | None:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return None


async def _channels(
    stack: contextlib.AsyncExitStack, target: str, count: int
) -> list[grpc.aio.Channel]:
    """`count` channels, each with a connection of its own."""
    options = [("grpc.max_receive_message_length", 64 << 20)]
    if count > 1:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return [
        await stack.enter_async_context(grpc.aio.insecure_channel(target, options=options))
        for _ in range(count)
    ]


def _rotate(sends: list[Send]) -> Send:
    """One send that takes the given ones in turn (one per connection)."""
    turns = itertools.cycle(sends)
    return lambda: next(turns)()


async def _classify_load(
    target: str,
    image: bytes,
    model: str,
    mode: str,
    streams: int,
    connections: int,
    window: _Window,
) -> None:
    request = pb.ClassifyRequest(model=model, image=image)
    async with contextlib.AsyncExitStack() as stack:
        stubs = [
            pb_grpc.InferenceServiceStub(c) for c in await _channels(stack, target, connections)
        ]
        for stub in stubs:
            await stub.Classify(request, wait_for_ready=True, timeout=60)
        if mode == "unary":
            sends: list[Send] = [functools.partial(_classify_once, stub, request) for stub in stubs]
            await window.run_callers(_rotate(sends))
            return
        window.start()
        streams = max(1, min(streams, window.concurrency))
        depth = max(1, window.concurrency // streams)
        await asyncio.gather(
            *(_streamer(stubs[i % len(stubs)], request, depth, window) for i in range(streams))
        )


async def _classify_once(
    stub: pb_grpc.InferenceServiceStub, request: pb.ClassifyRequest
) -> str | None:
    return await _grpc_call(stub.Classify(request, timeout=30))


async def _streamer(
    stub: pb_grpc.InferenceServiceStub, request: pb.ClassifyRequest, depth: int, window: _Window
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
        window.in_flight += 1
        await call.write(pb.ClassifyStreamRequest(id=key, request=request))

    for _ in range(depth):
        if window.sending:
            await send_one()
    sending = True
    while sent_at:
        response = await call.read()
        if response is grpc.aio.EOF:  # type: ignore[attr-defined]
            break
        sent = sent_at.pop(response.id)
        window.in_flight -= 1
        error = response.error.code if response.HasField("error") else None
        window.record(sent, None if error is None else f"code {error}")
        if sending and window.sending:
            await send_one()
        elif sending:
            sending = False
            await call.done_writing()
    if sending:
        await call.done_writing()
    await call.code()


async def _oip_load(
    target: str, tensor: np.ndarray, model: str, connections: int, window: _Window
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        channels = await _channels(stack, target, connections)
        stubs = [oip_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
        metadata = await stubs[0].ModelMetadata(
            oip_pb.ModelMetadataRequest(name=model), wait_for_ready=True, timeout=60
        )
        request = oip_pb.ModelInferRequest(model_name=model)
        request.inputs.add(name=metadata.inputs[0].name, datatype="FP32", shape=tensor.shape)
        request.raw_input_contents.append(tensor.astype("<f4").tobytes())
        sends: list[Send] = [functools.partial(_infer_once, stub, request) for stub in stubs]
        await window.run_callers(_rotate(sends))


async def _infer_once(
    stub: oip_grpc.GRPCInferenceServiceStub, request: oip_pb.ModelInferRequest
) -> str | None:
    return await _grpc_call(stub.ModelInfer(request, timeout=30))


def _http_request(
    payload: bytes | np.ndarray, model: str, mode: str, input_name: str
) -> tuple[str, bytes, str]:
    """The path, body and content type of one HTTP request of this mode."""
    if mode == "rest":
        assert isinstance(payload, bytes)
        return f"/v1/models/{model}:classify", payload, "application/octet-stream"
    if mode == "rest-json":
        assert isinstance(payload, bytes)
        body = json.dumps({"image_b64": base64.b64encode(payload).decode()})
        return f"/v1/models/{model}:classify", body.encode(), "application/json"
    assert isinstance(payload, np.ndarray)
    tensor = {
        "name": input_name,
        "shape": list(payload.shape),
        "datatype": "FP32",
        "data": payload.reshape(-1).tolist(),
    }
    return (
        f"/v2/models/{model}/infer",
        json.dumps({"inputs": [tensor]}).encode(),
        "application/json",
    )


async def _http_load(
    target: str, payload: bytes | np.ndarray, model: str, mode: str, window: _Window
) -> None:
    import aiohttp  # the `bench` extra; only these modes need it

    base = f"http://{target}"
    connector = aiohttp.TCPConnector(limit=window.concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        input_name = ""
        if mode == "oip-rest":
            async with session.get(f"/v2/models/{model}") as response:
                response.raise_for_status()
                input_name = (await response.json())["inputs"][0]["name"]
        path, body, content_type = _http_request(payload, model, mode, input_name)
        headers = {"content-type": content_type}
        timeout = aiohttp.ClientTimeout(total=30)

        async def send() -> str | None:
            try:
                async with session.post(path, data=body, headers=headers, timeout=timeout) as r:
                    await r.read()
                    return None if r.status == 200 else f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                return type(error).__name__

        if (error := await send()) is not None:
            raise RuntimeError(f"the first {mode} request to {base}{path} failed: {error}")
        await window.run_callers(send)
