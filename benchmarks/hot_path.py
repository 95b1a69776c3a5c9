"""What the Python around one call costs, piece by piece, in-process: no transport, no
load generator, so far less noise than a served benchmark (these machines move ±15 %
between runs of one), for changes too small to see in `per_call.py`.

    python benchmarks/hot_path.py [--repeat 5]

Times, on the digits model with its [1, 1, 8, 8] FP32 tensor: the call guard around a
handler that does nothing (request id, auth, metrics, the access log line as `serve`
writes it); the OIP request's checks (`_input_tensors`, `request_items`); the answer
(`_outputs`); one batch through `run_batch` (encode, ONNX Runtime, finish) and ONNX
Runtime's own run; one call through the batcher and through `OipServicer._infer`, one at
a time, with the batch run in the calling thread (the thread hand-off is not timed);
and the ink-on-paper preprocessing of 1 and 8 digit PNGs. Best of `--repeat` runs,
microseconds per call. Prints a Markdown table.

`--only PIECE --calls N` runs one piece N times, untimed, printing nothing: what
`benchmarks/instructions.sh` counts the instructions of, a measure that repeats where
these times do not.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from inference_throughput import digit_png
from per_call import infer_request

from modelwire import logs
from modelwire.api.oip import grpc_predict_v2_pb2 as oip
from modelwire.assembly import start_engine
from modelwire.core.images import decode, reduce, tensor_batch
from modelwire.core.oip import request_items
from modelwire.core.plane import run_batch
from modelwire.metrics import ServerMetrics
from modelwire.server.calls import CallGuard
from modelwire.server.servicers.oip import OipServicer
from modelwire.settings import Settings


class InThread(Executor):
    """Runs what it is given at once, in the calling thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn(*args, **kwargs))
        return done


class Context:
    """What the call guard reads of a grpc.aio context."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def set_trailing_metadata(self, metadata: object) -> None:
        pass

    def code(self) -> None:
        return None


def best(function: Callable[[], object], repeat: int, number: int = 2000) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


async def best_async(function: Callable[[], Awaitable[object]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(2000):
            await function()
        times.append((time.perf_counter() - started) / 2000)
    return min(times) * 1e6


def drive(coroutine: Any) -> object:
    """Run a coroutine that never waits to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine waited")


async def measure(repeat: int, only: str | None = None, count: int = 0) -> list[tuple[str, float]]:
    logs.configure_logging()
    assert logs._writer is not None
    logs._writer._stream = io.StringIO()  # the lines are formatted, then dropped
    with tempfile.TemporaryDirectory() as data:
        engine = await start_engine(Settings(data_dir=Path(data)))
        try:
            return await _pieces(engine, repeat, only, count)
        finally:
            await engine.close()
            logs.stop_logging()


async def _pieces(
    engine: Any, repeat: int, only: str | None, count: int
) -> list[tuple[str, float]]:
    served = engine.models.resolve("digits", None)
    task, backend = served.opened.task, served.opened.backend
    servicer = OipServicer(engine, 16)
    request = infer_request("digits", "input", np.zeros((1, 1, 8, 8), np.float32))
    context: Any = Context()  # the guard reads only these four methods

    async def nothing(request: object, context: object) -> int:
        return 1

    handler = grpc.unary_unary_rpc_method_handler(nothing)
    guard = CallGuard(None, ServerMetrics())
    guarded: Any = guard.guard("/inference.GRPCInferenceService/ModelInfer", handler).unary_unary
    tensors = servicer._input_tensors(request)
    items = request_items(tensors, served)
    result = await engine.infer(served, items, checked=True)
    session = backend._sessions.get()
    backend._sessions.put(session)
    batch = np.zeros((1, 1, 8, 8), np.float32)

    def answer() -> oip.ModelInferResponse:
        response = oip.ModelInferResponse(model_name="digits", model_version="1")
        servicer._outputs(request, result, response)
        return response

    png = digit_png()
    reduced = reduce(decode(png), task.preprocessing)

    def guarded_call() -> object:
        return drive(guarded(request, context))

    def checks() -> object:
        return request_items(servicer._input_tensors(request), served)

    served.batcher._executor = InThread()
    pieces: list[tuple[str, str, Callable[[], object], int]] = [
        ("guard", "call guard around a handler that does nothing", guarded_call, 2000),
        ("checks", "OIP request checks (_input_tensors + request_items)", checks, 2000),
        ("answer", "OIP answer (_outputs)", answer, 2000),
        (
            "resolve",
            "ModelManager.resolve, the default version",
            lambda: engine.models.resolve("digits", None),
            2000,
        ),
        ("ort", "ONNX Runtime's run, batch 1", lambda: session.run(None, {"input": batch}), 2000),
        (
            "run_batch",
            "run_batch, batch 1 (encode, run, finish)",
            lambda: run_batch(task, backend, items, {}),
            2000,
        ),
        (
            "paper",
            "ink-on-paper preprocessing, 1 PNG",
            lambda: tensor_batch([reduced], task.preprocessing),
            2000,
        ),
        (
            "paper8",
            "ink-on-paper preprocessing, 8 PNGs, per PNG",
            lambda: tensor_batch([reduced] * 8, task.preprocessing),
            -8,  # 500 runs of 8
        ),
    ]
    calls: list[tuple[str, str, Callable[[], Awaitable[object]]]] = [
        (
            "batcher",
            "one call through the batcher, batch run included",
            lambda: served.batcher.submit(items[0], key=None, rows=1),
        ),
        ("infer", "one OipServicer._infer, batch run included", lambda: servicer._infer(request)),
    ]
    if only is not None:  # run one piece `count` times, untimed, for an instruction count
        for key, _, function, _ in pieces:
            if key == only:
                for _ in range(count):
                    function()
        for key, _, call in calls:
            if key == only:
                for _ in range(count):
                    await call()
        return []
    rows = []
    for _, name, function, number in pieces:
        if number < 0:
            rows.append((name, best(function, repeat, 500) / -number))
        else:
            rows.append((name, best(function, repeat, number)))
    for _, name, call in calls:
        rows.append((name, await best_async(call, repeat)))
    return rows


PIECES = (
    "guard",
    "checks",
    "answer",
    "resolve",
    "ort",
    "run_batch",
    "paper",
    "paper8",
    "batcher",
    "infer",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--only", choices=PIECES, help="run this piece --calls times, untimed, and print nothing"
    )
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.repeat, args.only, args.calls))
    if args.only is not None:
        return
    print("| piece | µs per call |\n|---|---|")
    for name, micros in rows:
        print(f"| {name} | {micros:.1f} |")


if __name__ == "__main__":
    main()
