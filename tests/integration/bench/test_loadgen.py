"""The load generator and the bare echo server that the benchmarks rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import processes
from tests.conftest import RestServeProcess, ServeProcess
from tests.images import digit_bytes


def bench_json(target: str, payload: Path, *extra: str) -> Any:
    """`modelwire bench TARGET PAYLOAD --json`: short runs at 4 in flight unless
    `extra` says otherwise (a later flag wins)."""
    command = [sys.executable, "-m", "modelwire", "bench", target, str(payload)]
    result = processes.run(
        [*command, "--duration", "0.5", "--concurrency", "4", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def bench(target: str, payload: Path, *extra: str) -> dict[str, object]:
    summary: dict[str, object] = bench_json(target, payload, *extra)
    return summary


@pytest.mark.parametrize("mode", ["unary", "stream"])
def test_bench_against_modelwire(serve_process: ServeProcess, tmp_path: Path, mode: str) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(digit_bytes(5))
    summary = bench(serve_process.target, image, "--mode", mode, "--streams", "2")
    assert summary["mode"] == mode
    assert isinstance(summary["ok"], int)
    assert summary["ok"] > 0
    assert summary["errors"] == {}
    assert float(summary["p99_ms"]) >= float(summary["p50_ms"]) > 0  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["oip", "rest", "rest-json", "oip-rest"])
def test_bench_modes_over_oip_and_rest(
    rest_serve_process: RestServeProcess, tmp_path: Path, mode: str
) -> None:
    if mode in ("oip", "oip-rest"):
        payload = tmp_path / "digit.npy"
        np.save(payload, np.zeros((1, 1, 8, 8), np.float32))
    else:
        payload = tmp_path / "digit.png"
        payload.write_bytes(digit_bytes(5))
    target = rest_serve_process.serve.target if mode == "oip" else rest_serve_process.rest_target
    summary = bench(target, payload, "--mode", mode, "--model", "digits")
    assert summary["mode"] == mode
    assert isinstance(summary["ok"], int)
    assert summary["ok"] > 0
    assert summary["errors"] == {}


def test_sweep_count_rate_and_plot(serve_process: ServeProcess, tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(digit_bytes(5))
    picture = tmp_path / "sweep.png"
    target = serve_process.target
    sweep = ("--concurrency", "1,4", "--duration", "0.3", "--warmup", "0.1")
    rows = bench_json(target, image, *sweep, "--plot", str(picture))
    assert [row["concurrency"] for row in rows] == [1, 4]
    for row in rows:
        assert row["ok"] > 0
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert bench(target, image, "--count", "25")["answered"] == 25
    paced = bench(target, image, "--count", "20", "--rate", "100")
    assert paced["answered"] == 20
    assert paced["rate_per_s"] == 100
    table = processes.run(
        [sys.executable, "-m", "modelwire", "bench", target, str(image),
         "--count", "5", "--concurrency", "1"],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert "p99 ms" in table.stdout


def test_bench_refuses_a_mismatched_payload(serve_process: ServeProcess, tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(digit_bytes(5))
    result = processes.run(
        [
            sys.executable,
            "-m",
            "modelwire",
            "bench",
            serve_process.target,
            str(image),
            "--mode",
            "oip",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert ".npy" in result.stderr + result.stdout


def test_bench_against_the_echo_server(tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(digit_bytes(5))
    echo = processes.popen(
        [sys.executable, "-m", "modelwire.bench.echo", "--port", "0", "--rest-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None
        rest = echo.stdout.readline()
        assert rest.startswith("echo REST on 127.0.0.1:")
        url = f"http://{rest.rsplit(' ', 1)[1].strip()}/v1/models/digits:classify"
        request = urllib.request.Request(url, data=image.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (http only)
            assert answer.status == 200
            assert json.loads(answer.read())["classes"][0]["label"] == "7"
        line = echo.stdout.readline()
        assert line.startswith("echo listening on 127.0.0.1:")
        target = line.rsplit(" ", 1)[1].strip()
        tensor = tmp_path / "tensor.npy"
        np.save(tensor, np.zeros((1, 3, 224, 224), np.float32))
        for mode, payload in (("unary", image), ("stream", image), ("oip", tensor)):
            summary = bench(target, payload, "--mode", mode)
            assert isinstance(summary["ok"], int)
            assert summary["ok"] > 0
            assert summary["errors"] == {}
    finally:
        echo.terminate()
        echo.wait(timeout=30)
        assert echo.stdout is not None
        echo.stdout.close()
