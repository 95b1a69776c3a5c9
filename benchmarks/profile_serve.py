"""Where `modelwire serve` spends its CPU under load: a py-spy profile, summarised.

    python benchmarks/profile_serve.py [--case classify|infer|stream] [--duration 10]

Serves the digits model, loads it (h2load for unary Classify of the 28x28 PNG at 64 in
flight or ModelInfer of its tensor at 32; `modelwire bench` for ClassifyStream at 64),
and samples the server with py-spy meanwhile. Writes a summary, not the raw profile, to
benchmarks/profiles/<case>.md: the samples per thread (the event loop, the inference
pool, the log writer, the rest) and, for each, the functions with the most samples of
their own and those on the stack most often.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from per_call import CLASSIFY, GRPC_HEADERS, INFER, digit_bodies, h2load
from processes import load, start_with_rest, stop

ROOT = Path(__file__).resolve().parent.parent
TOP = 15


def thread_of(frames: list[str]) -> str:
    text = ";".join(frames[:8])  # the thread's outermost frames say which it is
    if "modelwire/core/threads.py" in text or "concurrent/futures/thread.py" in text:
        return "inference pool"
    if "modelwire/logs.py" in text:
        return "log writer"
    if "_run_module_as_main" in text:
        return "event loop"
    return "other"


def summarise(raw: str, title: str) -> str:
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_thread: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        thread = thread_of(frames)
        samples = int(number)
        per_thread[thread] += samples
        own[thread][frames[-1]] += samples
        for frame in set(frames):
            inclusive[thread][frame] += samples
    total = sum(per_thread.values()) or 1
    lines = [f"# {title}", "", "| thread | share of samples |", "|---|---|"]
    lines += [f"| {name} | {count / total:.0%} |" for name, count in per_thread.most_common()]
    for thread, count in per_thread.most_common():
        if thread == "other" or count / total < 0.02:
            continue
        header = ["", "| share of all samples | frame |", "|---|---|"]
        lines += ["", f"## {thread}: most samples of their own", *header]
        lines += [f"| {n / total:.1%} | `{f}` |" for f, n in own[thread].most_common(TOP)]
        lines += ["", f"## {thread}: most often on the stack", *header]
        # Leave out the frames (nearly) every sample of the thread has: its entry points.
        lines += [
            f"| {n / total:.1%} | `{f}` |"
            for f, n in inclusive[thread].most_common()
            if n < 0.9 * count
        ][:TOP]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["classify", "infer", "stream"], default="classify")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw profile here")
    args = parser.parse_args()
    for tool, package in (("h2load", "nghttp2-client"), ("py-spy", "py-spy")):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool} ({package})")
    work = Path(tempfile.mkdtemp(prefix="modelwire-profile-"))
    files = digit_bodies(work)
    server, target, _ = start_with_rest(
        [
            sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "0", "--data-dir", str(work / "data"),
        ]
    )  # fmt: skip
    try:
        h2load(f"http://{target}{CLASSIFY}", files["classify"], GRPC_HEADERS, 8, 1, False)
        length = args.duration + 2
        if args.case == "stream":
            work_load = threading.Thread(
                target=load, args=(target, work / "digit.png", "digits", "stream", 64, length)
            )
        else:
            path, body, n = (
                (INFER, "infer", 32) if args.case == "infer" else (CLASSIFY, "classify", 64)
            )
            work_load = threading.Thread(
                target=h2load,
                args=(f"http://{target}{path}", files[body], GRPC_HEADERS, n, length, False),
            )
        work_load.start()
        time.sleep(1)  # let the load reach its steady state before sampling (not a wait)
        profile = work / "profile.txt"
        subprocess.run(
            ["py-spy", "record", "--pid", str(server.pid), "--duration", str(args.duration),
             "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(profile)],
            capture_output=True, check=True,
        )  # fmt: skip
        raw = profile.read_text()
        if args.raw:
            shutil.copy(profile, args.raw)
        work_load.join()
    finally:
        stop(server)
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    what = {
        "classify": "unary Classify of the 28x28 PNG, 64 in flight (h2load)",
        "infer": "OIP ModelInfer of the FP32 tensor, 32 in flight (h2load)",
        "stream": "ClassifyStream of the PNG, 64 in flight (modelwire bench)",
    }[args.case]
    title = f"`modelwire serve`, digits: {what}; commit {commit}, {time.strftime('%Y-%m-%d')}"
    out = ROOT / "benchmarks" / "profiles" / f"{args.case}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(summarise(raw, title))
    print(out.read_text())


if __name__ == "__main__":
    main()
