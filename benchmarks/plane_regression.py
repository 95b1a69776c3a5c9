"""The data plane against a baseline commit: the same requests, the same machine, in
turns, so the ratio says what a change did to per-call speed.

    python benchmarks/plane_regression.py [--baseline REV] [--rounds 3] [--duration 3]

Checks REV (default: the previous commit) out into a temporary git worktree and runs
`modelwire serve` from it (its source first on PYTHONPATH, this checkout's installed
dependencies) beside a server from this checkout, one at a time. Each round measures,
on each server: the Open Inference Protocol tensor path (ModelInfer, the digits model
fed its preprocessed FP32 tensor) and the Classify image path (a PNG of a digit), at
concurrency 1 and 8. Prints the medians over rounds and the ratio this/baseline;
writes benchmarks/results/plane_regression.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from processes import load, start, stop

ROOT = Path(__file__).resolve().parent.parent
CASES = [("oip", 1), ("oip", 8), ("unary", 1), ("unary", 8)]


def payloads(folder: Path) -> dict[str, Path]:
    from sklearn.datasets import load_digits

    pixels = load_digits().images[0]
    tensor = folder / "digit.npy"
    np.save(tensor, (pixels / 16.0).astype(np.float32)[None, None])
    picture = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((28, 28))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    image = folder / "digit.png"
    image.write_bytes(buffer.getvalue())
    return {"oip": tensor, "unary": image}


def serve(source: Path, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env_path = str(source / "src")
    os.environ["PYTHONPATH"] = env_path
    try:
        return start(
            [
                sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1",
                "--port", "0", "--rest-port", "off", "--data-dir", str(data_dir),
            ]
        )  # fmt: skip
    finally:
        del os.environ["PYTHONPATH"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelwire-plane-"))
    baseline = work / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
        check=True,
        capture_output=True,
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    base_commit = subprocess.run(
        ["git", "-C", str(baseline), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    files = payloads(work)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"this": {}, "baseline": {}}
    try:
        for _ in range(args.rounds):
            for side, source in (("baseline", baseline), ("this", ROOT)):
                server, target = serve(source, work / f"data-{side}")
                try:
                    for mode, concurrency in CASES:
                        row = load(target, files[mode], "digits", mode, concurrency, args.duration)
                        runs[side].setdefault(f"{mode}-c{concurrency}", []).append(row)
                finally:
                    stop(server)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False
        )
        shutil.rmtree(work, ignore_errors=True)
    report(runs, commit, base_commit, args)


def report(
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    commit: str,
    base_commit: str,
    args: argparse.Namespace,
) -> None:
    summary: dict[str, Any] = {
        "commit": commit,
        "baseline": base_commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rounds": args.rounds,
        "duration_s": args.duration,
        "cases": {},
    }
    print(f"\nthis ({commit}) against the baseline ({base_commit}), medians of {args.rounds}")
    print("| path | concurrency | baseline req/s | this req/s | ratio | baseline p50 ms | "
          "this p50 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for case in runs["this"]:
        mode, level = case.rsplit("-c", 1)
        medians = {
            side: (
                statistics.median(r["throughput_per_s"] for r in runs[side][case]),
                statistics.median(r["p50_ms"] for r in runs[side][case]),
            )
            for side in ("baseline", "this")
        }
        ratio = medians["this"][0] / medians["baseline"][0]
        summary["cases"][case] = {"medians": medians, "ratio": ratio}
        path = "OIP ModelInfer, FP32 tensor" if mode == "oip" else "Classify, PNG"
        print(
            f"| {path} | {level} | {medians['baseline'][0]:.0f} | {medians['this'][0]:.0f} | "
            f"{ratio:.2f} | {medians['baseline'][1]:.2f} | {medians['this'][1]:.2f} |"
        )
    out = ROOT / "benchmarks" / "results" / "plane_regression.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
