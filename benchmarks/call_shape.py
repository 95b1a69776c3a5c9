"""What each step of a served call's shape costs a bare grpc.aio server, against
`modelwire serve` in the same run: the floor under the first per-call target.

    python benchmarks/call_shape.py [--duration 4] [--repeat 3] [--event-loop auto]

One OIP `ModelInfer` of the digits model's [1, 1, 8, 8] FP32 tensor at 32 in flight,
from h2load, against servers that each take one more step of what a served call does,
none of modelwire's serving code in them (no request id, auth, metrics, access log or
checks):

- `answer`: the handler returns a fixed answer (the echo server's `ModelInfer`);
- `suspend`: it awaits a future the loop resolves in its next turn;
- `thread`: it queues the call; the loop hands the queued calls, as one batch, to a
  thread of a pool of two (`WarmThreadPool`, the engine's), which posts them back with
  one `call_soon_threadsafe`; the calls that come meanwhile make the next batch, as the
  engine's batcher does with one model instance; nothing runs in the thread;
- `onnx`: the same, with the batch run in the thread through the digits model's ONNX
  Runtime session (one intra-op thread, as served) and a real answer built from it;
- `onnx-on-loop`: the same run done on the event loop, no thread (so each batch is the
  calls of one turn of the loop);
- `serve`: `modelwire serve`, the whole call.

Reports each server's calls a second, its CPU per call and its event loop's (from
/proc), medians of `--repeat` runs taken in turns, and the mean batch of the servers
that batch (the one-second warm-up included); prints a Markdown table and writes
benchmarks/results/call_shape.json.
`--serve SHAPE` runs one of the bare servers (it prints "echo listening on HOST:PORT").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, get_args

import grpc
import numpy as np
import onnxruntime as ort
from per_call import GRPC_HEADERS, INFER, Point, digit_bodies, h2load, measured
from processes import start_with_log, start_with_rest, stop
from switches import batch_size_totals

from modelwire.api.oip import grpc_predict_v2_pb2 as oip
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelwire.assembly import loop_factory
from modelwire.bench.echo import INFER_ANSWER
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder
from modelwire.core.threads import WarmThreadPool
from modelwire.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ("answer", "suspend", "thread", "onnx", "onnx-on-loop")
IN_FLIGHT = 32
Batch = list[tuple[np.ndarray, "asyncio.Future[Any]"]]


class ShapeServicer(oip_grpc.GRPCInferenceServiceServicer):
    """ModelInfer, taken as far as `shape` says."""

    def __init__(self, shape: str) -> None:
        self._shape = shape
        self._loop = asyncio.get_running_loop()
        self._pool = WarmThreadPool(2, "inference")
        self._queue: Batch = []
        self._soon = self._running = False
        self.batches = self.items = 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        folder = read_model_folder(DEFAULT_MODEL_DIR)
        onnx = folder.source(folder.versions[-1]).onnx_path  # the version served
        self._session = ort.InferenceSession(str(onnx), options)
        self._input = self._session.get_inputs()[0].name

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> oip.ModelInferResponse:
        if self._shape == "answer":
            return INFER_ANSWER
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._shape == "suspend":
            self._loop.call_soon(future.set_result, None)
            await future
            return INFER_ANSWER
        raw = request.raw_input_contents[0]
        self._queue.append(
            (np.frombuffer(raw, np.float32).reshape(request.inputs[0].shape), future)
        )
        if not self._soon and not self._running:
            self._soon = True
            self._loop.call_soon(self._dispatch)
        logits = await future
        if logits is None:
            return INFER_ANSWER
        response = oip.ModelInferResponse(model_name="digits", model_version="1", id=request.id)
        response.outputs.add(name="logits", datatype="FP32", shape=logits.shape)
        response.raw_output_contents.append(logits.tobytes())
        return response

    def _dispatch(self) -> None:
        """The calls queued so far, as one batch: to a thread, or run here."""
        self._soon = False
        batch, self._queue = self._queue, []
        self.batches += 1
        self.items += len(batch)
        if self._shape == "onnx-on-loop":
            self._answer(batch, self._run(batch))
            return
        self._running = True
        self._pool.submit(self._in_thread, batch)

    def _in_thread(self, batch: Batch) -> None:
        results = [None] * len(batch) if self._shape == "thread" else self._run(batch)
        self._loop.call_soon_threadsafe(self._answer, batch, results)

    def _run(self, batch: Batch) -> list[Any]:
        tensor = np.concatenate([item for item, _ in batch])
        (logits,) = self._session.run(None, {self._input: tensor})
        return [logits[row : row + 1] for row in range(len(batch))]

    def _answer(self, batch: Batch, results: list[Any]) -> None:
        """On the loop: each caller's result; then the calls queued meanwhile, if any."""
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        self._running = False
        if self._queue:
            self._dispatch()


async def serve(shape: str, counts: Path) -> None:
    """One bare server until SIGTERM; then its batches and items, as JSON, to `counts`."""
    server = grpc.aio.server()
    servicer = ShapeServicer(shape)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print(f"echo listening on 127.0.0.1:{bound}", flush=True)
    await stopping.wait()
    written = json.dumps({"batches": servicer.batches, "items": servicer.items})
    counts.write_text(written)  # noqa: ASYNC240 (the calls are over: nothing waits)
    await server.stop(None)


def mean_batch(counts: Path) -> float | None:
    """The mean batch a stopped bare server wrote, if it batched."""
    written = json.loads(counts.read_text())
    return written["items"] / written["batches"] if written["batches"] else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    loops = get_args(Settings.model_fields["event_loop"].annotation)
    parser.add_argument("--event-loop", choices=loops, default="auto")
    parser.add_argument("--serve", choices=SHAPES, help="run one bare server")
    parser.add_argument("--counts", type=Path, help="where --serve writes its batch counts")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/call_shape.json")
    args = parser.parse_args()
    if not args.serve and not shutil.which("h2load"):
        raise SystemExit("needs h2load (Debian package nghttp2-client)")
    factory = loop_factory(Settings(event_loop=args.event_loop))
    if args.serve:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(args.serve, args.counts))
        return

    work = Path(tempfile.mkdtemp(prefix="call-shape-"))
    body = digit_bodies(work)["infer"]
    this = [sys.executable, str(Path(__file__).resolve())]
    loop = ["--event-loop", args.event_loop]
    servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
    for shape in SHAPES:
        counts = ["--counts", str(work / f"{shape}.json")]
        process, target, _ = start_with_log([*this, "--serve", shape, *counts, *loop])
        servers[shape] = (process, target)
    serve_command = [
        sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
        "--rest-port", "0", "--data-dir", str(work / "data"), *loop,
    ]  # fmt: skip
    process, target, rest = start_with_rest(serve_command)
    servers["serve"] = (process, target)
    points = {shape: Point(shape) for shape in servers}
    batches: dict[str, float | None] = {}
    try:
        for _, target in servers.values():  # warm-up
            h2load(f"http://{target}{INFER}", body, GRPC_HEADERS, IN_FLIGHT, 1, False)
        served_before = batch_size_totals(rest)
        for _ in range(args.repeat):
            for shape, (process, target) in servers.items():
                url = f"http://{target}{INFER}"
                measured(process.pid, points[shape], url, body, GRPC_HEADERS, IN_FLIGHT,
                         args.duration, False)  # fmt: skip
        served_after = batch_size_totals(rest)
        items = served_after[0] - served_before[0]
        count = served_after[1] - served_before[1]
        batches["serve"] = items / count if count else None
    finally:
        for shape, (process, _) in servers.items():
            stop(process)
            if shape != "serve":
                batches[shape] = mean_batch(work / f"{shape}.json")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results = {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "event_loop": args.event_loop,
        "in_flight": IN_FLIGHT,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "shapes": {
            shape: {**point.summary(), "mean_batch": batches.get(shape)}
            for shape, point in points.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(results: dict[str, Any]) -> None:
    answer = results["shapes"]["answer"]
    print("| shape | calls/s | x answer | server CPU per call | loop's CPU per call | batch |")
    print("|---|---|---|---|---|---|")
    for shape, row in results["shapes"].items():
        batch = f"{row['mean_batch']:.2f}" if row["mean_batch"] else ""
        print(
            f"| {shape} | {row['throughput_per_s']:,.0f} "
            f"| {row['throughput_per_s'] / answer['throughput_per_s']:.2f} "
            f"| {row['server_cpu_ms_per_call']:.3f} ms "
            f"| {row['loop_thread_cpu_ms_per_call']:.3f} ms "
            f"| {batch} |"
        )


if __name__ == "__main__":
    main()
