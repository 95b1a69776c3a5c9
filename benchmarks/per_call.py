"""What one call costs the server, against the bare transport, REST and raw ONNX Runtime,
in one run.

    python benchmarks/per_call.py [--duration 3] [--repeat 3] [--skip-resnet]
                                  [--event-loop auto|asyncio|uvloop] [--out FILE]

The server-bound rows use h2load (nghttp2's C load generator: Debian's nghttp2-client),
which costs the two shared cores far less than a Python client: gRPC calls are framed by
hand (a 0 byte, the length, the message) over HTTP/2, REST calls go over HTTP/1.1 with
one connection per call in flight. Each row also gives the server's own CPU time per
answered call, from /proc, so the client's cost stays out of it, and how much of that
its event loop's thread spent (the GIL lets one thread run Python at a time). Rows:
- OIP ModelInfer of the digits model's FP32 tensor [1, 1, 8, 8], 32 in flight, against
  the bare grpc.aio echo server (`modelwire.bench.echo`) answering the same request;
- Classify of the 28x28 digit PNG, 64 in flight, against the echo server;
- the same PNG: gRPC Classify against REST classify with the raw body and with JSON
  base64, 8 and 32 in flight; and the transports' own ceilings there, the echo server's
  gRPC Classify against its REST side (FastAPI on uvicorn, the REST gateway's stack);
- ClassifyStream against unary Classify at 32 and 64 in flight, both from
  `modelwire bench` (h2load cannot hold a stream open), and the same against the echo
  server at 64;
- unless --skip-resnet: a ResNet-18-shaped network (random weights) at 1 and 32 in
  flight, its tensor through ModelInfer and a 224x224 JPEG through Classify, against raw
  ONNX Runtime at batch 1 in-process (for the JPEG, decode and preprocessing counted);
  and the echo server answering the same requests from the same client at 1 in flight,
  the bare round trip. At 1 in flight a call is the round trip, then the run, so the most
  a served call can reach there is 1 / (1/raw + 1/echo): the rows give that ceiling too.
  The 1-in-flight rows are measured from h2load as well (server and echo server), which
  leaves out the Python client's cost, with the server's CPU per call.
Every point runs `--repeat` times, interleaved; medians count. Calls that failed are
counted from the server's own metrics and must be none. The echo server runs on the
event loop the server runs on (--event-loop, default what `serve` takes). Writes
benchmarks/results/per_call.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from inference_throughput import digit_png, photo_jpeg
from processes import (
    cpu_seconds,
    failed_calls,
    load,
    start,
    start_with_log,
    start_with_rest,
    stop,
)

from modelwire.api.oip import grpc_predict_v2_pb2 as oip
from modelwire.api.v1 import inference_pb2 as pb
from modelwire.core.images import decode, preprocess
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder

ROOT = Path(__file__).resolve().parent.parent
CLASSIFY = "/modelwire.api.v1.InferenceService/Classify"
INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]


def grpc_body(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


def infer_request(model: str, name: str, tensor: np.ndarray) -> oip.ModelInferRequest:
    return oip.ModelInferRequest(
        model_name=model,
        inputs=[
            oip.ModelInferRequest.InferInputTensor(
                name=name, datatype="FP32", shape=list(tensor.shape)
            )
        ],
        raw_input_contents=[tensor.tobytes()],
    )


def h2load(
    url: str, body: Path, headers: list[str], in_flight: int, duration: float, http1: bool
) -> tuple[float, int]:
    """(req/s, calls answered) of one h2load run."""
    if http1:  # HTTP/1.1 holds one call per connection
        shape = ["--h1", "-c", str(in_flight), "-m", "1"]
    else:  # gRPC multiplexes: up to 8 calls per connection
        connections = max(1, in_flight // 8)
        shape = ["-c", str(connections), "-m", str(in_flight // connections)]
    command = ["h2load", "-D", str(round(duration)), *shape, "-d", str(body)]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", output)
    assert rate, output
    assert done, output
    return float(rate.group(1)), int(done.group(1))


class Point:
    """One measured configuration: its runs, and their medians."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rates: list[float] = []
        self.cpu_ms: list[float] = []
        self.loop_cpu_ms: list[float] = []
        self.p50_ms: list[float] = []

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": self.title, "runs": self.rates}
        out["throughput_per_s"] = statistics.median(self.rates)
        if self.cpu_ms:
            out["server_cpu_ms_per_call"] = statistics.median(self.cpu_ms)
        if self.loop_cpu_ms:
            out["loop_thread_cpu_ms_per_call"] = statistics.median(self.loop_cpu_ms)
        if self.p50_ms:
            out["p50_ms"] = statistics.median(self.p50_ms)
        return out


def measured(pid: int, point: Point, *h2load_args: Any) -> None:
    """One h2load run into `point`, with the CPU time process `pid`, and its main thread
    (the event loop), spent on it."""
    before, loop_before = cpu_seconds(pid), cpu_seconds(pid, pid)
    rate, answered = h2load(*h2load_args)
    point.rates.append(rate)
    point.cpu_ms.append((cpu_seconds(pid) - before) * 1e3 / max(1, answered))
    point.loop_cpu_ms.append((cpu_seconds(pid, pid) - loop_before) * 1e3 / max(1, answered))


def digit_bodies(work: Path) -> dict[str, Path]:
    """The digit's request bodies in files, by name: classify and infer (gRPC messages,
    framed), rest (the PNG) and rest-json; and digit.png and digit.npy (its tensor) for
    `modelwire bench`."""
    png = digit_png()
    (work / "digit.png").write_bytes(png)
    config = read_model_folder(DEFAULT_MODEL_DIR).config.input
    assert config is not None
    tensor = preprocess(decode(png), config.preprocessing())[np.newaxis]
    np.save(work / "digit.npy", tensor)
    bodies: dict[str, bytes | str] = {
        "classify": grpc_body(pb.ClassifyRequest(model="digits", image=png)),
        "infer": grpc_body(infer_request("digits", "input", tensor)),
        "rest": png,
        "rest-json": json.dumps({"image_b64": base64.b64encode(png).decode()}),
    }
    files = {}
    for name, data in bodies.items():
        files[name] = work / f"{name}.body"
        files[name].write_bytes(data.encode() if isinstance(data, str) else data)
    return files


def start_echo(event_loop: str) -> tuple[subprocess.Popen[str], str, str]:
    """The echo server with its REST side: the process, its gRPC and REST HOST:PORT."""
    command = [sys.executable, "-m", "modelwire.bench.echo", "--port", "0", "--rest-port", "0"]
    process, target, lines = start_with_log([*command, "--event-loop", event_loop])
    rest = next(line.rsplit(" ", 1)[1].strip() for line in lines if "echo REST on" in line)
    return process, target, rest


def digits_points(
    work: Path, duration: float, repeat: int, event_loop: str
) -> dict[str, dict[str, Any]]:
    files = digit_bodies(work)
    points: dict[str, Point] = {}

    def point(key: str, title: str) -> Point:
        return points.setdefault(key, Point(title))

    echo, echo_target, echo_rest = start_echo(event_loop)
    server, target, rest = start_with_rest(
        [
            sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "0", "--data-dir", str(work / "data"), "--event-loop", event_loop,
        ]
    )  # fmt: skip
    grpc_cases = [
        ("infer-echo", "echo server, ModelInfer", echo, echo_target, INFER, "infer", 32),
        ("infer", "OIP ModelInfer, FP32 tensor", server, target, INFER, "infer", 32),
        ("classify-echo", "echo server, Classify", echo, echo_target, CLASSIFY, "classify", 64),
        ("classify-64", "Classify, PNG", server, target, CLASSIFY, "classify", 64),
    ]
    for n in (8, 32):
        grpc_cases += [
            (f"classify-echo-{n}", "echo server, Classify", echo, echo_target, CLASSIFY,
             "classify", n),
            (f"classify-{n}", "gRPC Classify, PNG", server, target, CLASSIFY, "classify", n),
        ]  # fmt: skip
    rest_cases = [
        (f"{mode}-{n}", title, process, f"http://{where}/v1/models/digits:classify", body,
         content, n)
        for n in (8, 32)
        for mode, title, process, where, body, content in (
            ("rest-echo", "echo server, REST (FastAPI)", echo, echo_rest, "rest",
             "application/octet-stream"),
            ("rest", "REST classify, raw PNG body", server, rest, "rest",
             "application/octet-stream"),
            ("rest-json", "REST classify, JSON base64", server, rest, "rest-json",
             "application/json"),
        )
    ]  # fmt: skip
    try:
        # Warm-up: every path once, briefly.
        h2load(f"http://{target}{CLASSIFY}", files["classify"], GRPC_HEADERS, 8, 1, False)
        h2load(f"http://{echo_target}{CLASSIFY}", files["classify"], GRPC_HEADERS, 8, 1, False)
        for _ in range(repeat):
            for key, title, process, where, path, body, n in grpc_cases:
                url = f"http://{where}{path}"
                found = point(key, title)
                measured(process.pid, found, url, files[body], GRPC_HEADERS, n, duration, False)
            for key, title, process, url, body, content, n in rest_cases:
                headers = [f"content-type: {content}"]
                found = point(key, title)
                measured(process.pid, found, url, files[body], headers, n, duration, True)
            bench_cases = [("", server, target, n) for n in (32, 64)]
            bench_cases.append(("echo-", echo, echo_target, 64))
            for prefix, process, where, n in bench_cases:
                for mode in ("unary", "stream"):
                    before = cpu_seconds(process.pid)
                    run = load(where, work / "digit.png", "digits", mode, n, duration)
                    key = f"bench-{prefix}{mode}-{n}"
                    title = "ClassifyStream" if mode == "stream" else "Classify"
                    if prefix:
                        title = f"echo server, {title}"
                    found = point(key, f"{title}, modelwire bench")
                    found.rates.append(run["throughput_per_s"])
                    found.p50_ms.append(run["p50_ms"])
                    found.cpu_ms.append(
                        (cpu_seconds(process.pid) - before) * 1e3 / max(1, run["answered"])
                    )
        failed = failed_calls(rest)
    finally:
        stop(server)
        stop(echo)
    assert failed == 0, f"{failed} calls failed"
    return {key: found.summary() for key, found in points.items()}


def resnet_points(work: Path, duration: float, repeat: int, event_loop: str) -> dict[str, Any]:
    from inference_throughput import raw_throughput

    from modelwire.core.images import DEFAULT_LIMITS

    repository = work / "resnet"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/inference_throughput.py"),
         "--build-repository", str(repository)],
        check=True, capture_output=True,
    )  # fmt: skip
    folder = repository / "resnet18"
    onnx = folder / "1/model.onnx"
    jpeg = photo_jpeg()
    (work / "photo.jpg").write_bytes(jpeg)
    spec = read_model_folder(folder).config.input
    assert spec is not None
    tensor = preprocess(decode(jpeg, DEFAULT_LIMITS), spec.preprocessing())[np.newaxis]
    np.save(work / "photo.npy", tensor)
    raw = raw_throughput(onnx, (3, 224, 224), 2, batches=(1,))["batch_1"]
    raw_jpeg = raw_jpeg_throughput(onnx, jpeg, spec.preprocessing())
    server, target = start(
        [
            sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "off", "--model-repository", str(repository),
            "--no-default-model", "--data-dir", str(work / "resnet-data"),
            "--event-loop", event_loop,
        ]
    )  # fmt: skip
    echo, echo_target, _ = start_echo(event_loop)
    # The same two calls from h2load, one at a time: the round trip without the Python
    # client's share of the cores.
    import onnxruntime as ort

    input_name = ort.InferenceSession(str(onnx)).get_inputs()[0].name
    bodies = {
        "oip": grpc_body(infer_request("resnet18", input_name, tensor)),
        "unary": grpc_body(pb.ClassifyRequest(model="resnet18", image=jpeg)),
    }
    for mode, body in bodies.items():
        (work / f"resnet-{mode}.body").write_bytes(body)
    rows: dict[str, Point] = {}
    h2load_rows: dict[str, Point] = {}
    try:
        load(target, work / "photo.npy", "resnet18", "oip", 1, 1.0)  # warm-up
        for _ in range(repeat):
            for mode, payload in (("oip", "photo.npy"), ("unary", "photo.jpg")):
                title = "OIP ModelInfer, tensor" if mode == "oip" else "Classify, JPEG"
                points = [(target, n, f"{mode}-{n}", title) for n in (1, 32)]
                points.append((echo_target, 1, f"echo-{mode}-1", f"echo server, {title}"))
                for address, n, key, name in points:
                    run = load(address, work / payload, "resnet18", mode, n, duration)
                    found = rows.setdefault(key, Point(name))
                    found.rates.append(run["throughput_per_s"])
                    found.p50_ms.append(run["p50_ms"])
            for mode, path in (("oip", INFER), ("unary", CLASSIFY)):
                title = "OIP ModelInfer, tensor" if mode == "oip" else "Classify, JPEG"
                body_file = work / f"resnet-{mode}.body"
                for process, where, key, name in (
                    (server, target, mode, f"{title}, h2load"),
                    (echo, echo_target, f"echo-{mode}", f"echo server, {title}, h2load"),
                ):
                    found = h2load_rows.setdefault(key, Point(name))
                    url = f"http://{where}{path}"
                    measured(process.pid, found, url, body_file, GRPC_HEADERS, 1, duration, False)
    finally:
        stop(server)
        stop(echo)
    return {
        "raw_batch_1": raw,
        "raw_jpeg_batch_1": raw_jpeg,
        "served": {key: found.summary() for key, found in rows.items()},
        "h2load_1": {key: found.summary() for key, found in h2load_rows.items()},
    }


def raw_jpeg_throughput(onnx: Path, jpeg: bytes, spec: Any) -> float:
    """Images/s of decode + preprocess + one 2-thread session run, in-process, 3 s."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        session.run(None, {name: preprocess(decode(jpeg), spec)[np.newaxis]})
        runs += 1
    return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument(
        "--event-loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="the servers' event loop, the echo server's too (default: what serve takes)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "per_call.json"
    )
    args = parser.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("needs h2load (Debian package nghttp2-client)")
    work = Path(tempfile.mkdtemp(prefix="modelwire-per-call-"))
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results: dict[str, Any] = {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "duration_s": args.duration,
        "repeat": args.repeat,
        "event_loop": args.event_loop,
        "digits": digits_points(work, args.duration, args.repeat, args.event_loop),
    }
    if not args.skip_resnet:
        results["resnet18"] = resnet_points(work, args.duration, args.repeat, args.event_loop)
    shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(results: dict[str, Any]) -> None:
    d = results["digits"]

    def rate(key: str) -> float:
        return float(d[key]["throughput_per_s"])

    print(f"\n{results['machine']}, commit {results['commit']}, medians of {results['repeat']}")
    print(
        "\n| row | in flight | req/s | ratio | server CPU ms/call | of which the loop's thread |"
        "\n|---|---|---|---|---|---|"
    )
    rows = [
        ("infer-echo", 32, "", None),
        ("infer", 32, "x echo", "infer-echo"),
        ("classify-echo", 64, "", None),
        ("classify-64", 64, "x echo", "classify-echo"),
    ]
    for n in (8, 32):
        rows += [
            (f"classify-echo-{n}", n, "", None),
            (f"rest-echo-{n}", n, "gRPC x", f"classify-echo-{n}"),
            (f"classify-{n}", n, "", None),
            (f"rest-{n}", n, "gRPC x", f"classify-{n}"),
            (f"rest-json-{n}", n, "gRPC x", f"classify-{n}"),
        ]
    for prefix, n in (("", 32), ("", 64), ("echo-", 64)):
        rows += [
            (f"bench-{prefix}unary-{n}", n, "", None),
            (f"bench-{prefix}stream-{n}", n, "x unary", f"bench-{prefix}unary-{n}"),
        ]
    for key, n, label, against in rows:
        ratio = ""
        if against is not None:
            value = rate(key) / rate(against)
            if label == "gRPC x":
                value = 1 / value
            ratio = f"{label} {value:.2f}"
        cpu = d[key].get("server_cpu_ms_per_call")
        loop = d[key].get("loop_thread_cpu_ms_per_call")
        print(
            f"| {d[key]['title']} | {n} | {rate(key):,.0f} | {ratio} | "
            f"{'' if cpu is None else f'{cpu:.3f}'} | {'' if loop is None else f'{loop:.3f}'} |"
        )
    cpu_ratio = d["infer"]["server_cpu_ms_per_call"] / d["infer-echo"]["server_cpu_ms_per_call"]
    print(f"\nModelInfer server CPU per call: {cpu_ratio:.2f}x the echo server's")
    if "resnet18" in results:
        r = results["resnet18"]
        print(f"\nResNet-18 shape: raw ONNX Runtime batch 1 {r['raw_batch_1']:.1f}/s, with JPEG "
              f"decode and preprocessing {r['raw_jpeg_batch_1']:.1f}/s")  # fmt: skip
        served = r["served"]
        print(
            "\n| API | in flight | req/s | x raw | x ceiling (raw run + echo round trip) | "
            "p50 ms |\n|---|---|---|---|---|---|"
        )
        for key, row in served.items():
            if key.startswith("echo-"):
                continue
            mode, n = key.split("-")
            base = r["raw_batch_1"] if mode == "oip" else r["raw_jpeg_batch_1"]
            ceiling = ""
            if n == "1":
                echo = served[f"echo-{mode}-1"]["throughput_per_s"]
                ceiling = f"{row['throughput_per_s'] * (1 / base + 1 / echo):.2f}"
            print(
                f"| {row['title']} | {n} | {row['throughput_per_s']:.1f} | "
                f"{row['throughput_per_s'] / base:.2f} | {ceiling} | {row['p50_ms']:.1f} |"
            )
        for mode in ("oip", "unary"):
            echo_row = served[f"echo-{mode}-1"]
            print(
                f"| {echo_row['title']} | 1 | {echo_row['throughput_per_s']:.1f} | | | "
                f"{echo_row['p50_ms']:.2f} |"
            )
        alone = r["h2load_1"]
        print(
            "\nThe same at 1 in flight from h2load:\n\n| API | req/s | x raw | x ceiling | "
            "server CPU ms/call | echo round trip ms |\n|---|---|---|---|---|---|"
        )
        for mode in ("oip", "unary"):
            row, echo_row = alone[mode], alone[f"echo-{mode}"]
            base = r["raw_batch_1"] if mode == "oip" else r["raw_jpeg_batch_1"]
            rate, echo_rate = row["throughput_per_s"], echo_row["throughput_per_s"]
            print(
                f"| {row['title']} | {rate:.1f} | {rate / base:.2f} | "
                f"{rate * (1 / base + 1 / echo_rate):.2f} | "
                f"{row['server_cpu_ms_per_call']:.2f} | {1e3 / echo_rate:.2f} |"
            )


if __name__ == "__main__":
    main()
