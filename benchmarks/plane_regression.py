"""This checkout against a baseline commit: the same requests, the same machine, in
turns, so the ratio says what a change did to per-call speed.

    python benchmarks/plane_regression.py [--baseline REV] [--this REV] [--rounds 3]
        [--this-flags FLAGS] [--baseline-flags FLAGS]

Checks REV (default: the previous commit) out into a temporary git worktree and runs
`modelwire serve` from it (its source first on PYTHONPATH, this checkout's installed
dependencies) beside a server from this checkout (or from --this REV, checked out the
same way: to measure one commit against its parent), one at a time. Each round measures, on
each server, the digits model:
- with h2load (nghttp2's C load generator, see per_call.py), the server's throughput
  and its own CPU time per call: OIP ModelInfer of the FP32 tensor at 32 in flight,
  Classify of the 28x28 PNG at 64, REST classify of the PNG at 8 (the raw body, and
  JSON base64);
- with `modelwire bench` (Python), throughput and p50: ModelInfer and Classify at 1 in
  flight, ClassifyStream at 64.
Prints the medians over rounds and the ratios this/baseline; writes
benchmarks/results/plane_regression.json.
"""

from __future__ import annotations

import argparse
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

from per_call import CLASSIFY, GRPC_HEADERS, INFER, digit_bodies, h2load
from processes import cpu_seconds, failed_calls, load, start_with_rest, stop

ROOT = Path(__file__).resolve().parent.parent
#: (case, title, in flight)
H2LOAD_CASES = [
    ("infer", "OIP ModelInfer, FP32 tensor (h2load)", 32),
    ("classify", "Classify, PNG (h2load)", 64),
    ("rest", "REST classify, PNG body (h2load)", 8),
    ("rest-json", "REST classify, JSON base64 (h2load)", 8),
]
REST_CONTENT_TYPES = {"rest": "application/octet-stream", "rest-json": "application/json"}
H2LOAD_NAMES = {case for case, _, _ in H2LOAD_CASES}
BENCH_CASES = [
    ("oip", "OIP ModelInfer, FP32 tensor", 1),
    ("unary", "Classify, PNG", 1),
    ("stream", "ClassifyStream, PNG", 64),
]


def serve(source: Path, data_dir: Path, flags: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    os.environ["PYTHONPATH"] = str(source / "src")
    try:
        return start_with_rest(
            [
                sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1",
                "--port", "0", "--rest-port", "0", "--data-dir", str(data_dir), *flags,
            ]
        )  # fmt: skip
    finally:
        del os.environ["PYTHONPATH"]


def measure_round(
    source: Path, work: Path, files: dict[str, Path], duration: float, flags: list[str]
) -> dict[str, dict[str, float]]:
    server, target, rest = serve(source, work / f"data-{source.name}", flags)
    out: dict[str, dict[str, float]] = {}
    try:
        h2load(f"http://{target}{CLASSIFY}", files["classify"], GRPC_HEADERS, 8, 1, False)
        for case, _, n in H2LOAD_CASES:
            if case in REST_CONTENT_TYPES:
                url = f"http://{rest}/v1/models/digits:classify"
                headers = [f"content-type: {REST_CONTENT_TYPES[case]}"]
            else:
                url = f"http://{target}{INFER if case == 'infer' else CLASSIFY}"
                headers = GRPC_HEADERS
            before = cpu_seconds(server.pid)
            http1 = case in REST_CONTENT_TYPES
            rate, answered = h2load(url, files[case], headers, n, duration, http1)
            cpu = (cpu_seconds(server.pid) - before) * 1e3 / max(1, answered)
            out[case] = {"throughput_per_s": rate, "server_cpu_ms_per_call": cpu}
        for mode, _, n in BENCH_CASES:
            payload = files["npy"] if mode == "oip" else files["png"]
            row = load(target, payload, "digits", mode, n, duration)
            out[mode] = {"throughput_per_s": row["throughput_per_s"], "p50_ms": row["p50_ms"]}
        assert failed_calls(rest) == 0, "calls failed"
    finally:
        stop(server)
    return out


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="default: the parent of --this, or HEAD~1")
    parser.add_argument("--this", help="a commit instead of this checkout")
    parser.add_argument(
        "--this-flags", default="", help='`serve` flags for this side, e.g. "--event-loop uvloop"'
    )
    parser.add_argument(
        "--baseline-flags",
        default="",
        help='`serve` flags for the baseline, e.g. "--event-loop asyncio" against this '
        "checkout's default",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "plane_regression.json"
    )
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("needs h2load (Debian package nghttp2-client)")
    work = Path(tempfile.mkdtemp(prefix="modelwire-plane-"))
    baseline = work / "baseline"
    git("worktree", "add", "--detach", str(baseline), args.baseline or f"{args.this or 'HEAD'}~1")
    this = ROOT
    if args.this:
        this = work / "this"
        try:
            git("worktree", "add", "--detach", str(this), args.this)
        except subprocess.CalledProcessError:
            git("worktree", "remove", "--force", str(baseline))
            raise
    commit = git("-C", str(this), "rev-parse", "--short", "HEAD")
    dirty = not args.this and bool(git("status", "--porcelain", "--untracked-files=no"))
    base_commit = git("-C", str(baseline), "rev-parse", "--short", "HEAD")
    files = digit_bodies(work)
    files["png"], files["npy"] = work / "digit.png", work / "digit.npy"
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"this": [], "baseline": []}
    try:
        for round_number in range(args.rounds):
            sides = [
                ("baseline", baseline, args.baseline_flags.split()),
                ("this", this, args.this_flags.split()),
            ]
            for side, source, flags in sides[:: 1 if round_number % 2 == 0 else -1]:  # in turns
                runs[side].append(measure_round(source, work, files, args.duration, flags))
    finally:
        git("worktree", "remove", "--force", str(baseline))
        if this != ROOT:
            git("worktree", "remove", "--force", str(this))
        shutil.rmtree(work, ignore_errors=True)
    label = (
        commit
        + (" (with changes)" if dirty else "")
        + (f" {args.this_flags}" if args.this_flags else "")
    )
    if args.baseline_flags:
        base_commit += f" {args.baseline_flags}"
    report(runs, label, base_commit, args)


def report(
    runs: dict[str, list[dict[str, dict[str, float]]]],
    commit: str,
    base_commit: str,
    args: argparse.Namespace,
) -> None:
    def median(side: str, case: str, key: str) -> float:
        return statistics.median(run[case][key] for run in runs[side])

    summary: dict[str, Any] = {
        "commit": commit,
        "baseline": base_commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rounds": args.rounds,
        "duration_s": args.duration,
        "cases": {},
    }
    print(f"\nthis ({commit}) against the baseline ({base_commit}), medians of {args.rounds}")
    print("| path | in flight | baseline req/s | this req/s | ratio | baseline → this |")
    print("|---|---|---|---|---|---|")
    for case, title, n in H2LOAD_CASES + BENCH_CASES:
        before, after = (median(side, case, "throughput_per_s") for side in ("baseline", "this"))
        extra = "server_cpu_ms_per_call" if case in H2LOAD_NAMES else "p50_ms"
        detail = [median(side, case, extra) for side in ("baseline", "this")]
        unit = "ms CPU/call" if extra == "server_cpu_ms_per_call" else "ms p50"
        summary["cases"][case] = {
            "title": title, "in_flight": n, "baseline": before, "this": after,
            "ratio": after / before, extra: detail,
        }  # fmt: skip
        print(
            f"| {title} | {n} | {before:,.0f} | {after:,.0f} | {after / before:.2f} | "
            f"{detail[0]:.3f} → {detail[1]:.3f} {unit} |"
        )
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
