"""Character accuracy and pictures per second of ReadText, against rapidocr in-process on
the same pictures, in one run.

    python benchmarks/ocr.py [--repeat 3]

Imports the PP-OCR models of rapidocr-onnxruntime 1.4.4 (`modelwire import rapidocr`)
into a temporary repository and serves them with `modelwire serve`. The pictures are the
pages of tests/integration/test_ocr.py (English in three DejaVu faces, Chinese in
WenQuanYi Micro Hei, turned 8 and -10 degrees, noisy, upside down). For each:
character accuracy (1 - CER, spaces ignored) of modelwire and of rapidocr against the
drawn text in reading order (bottom line first when upside down), and of modelwire
against rapidocr. Throughput: every page in turn through ReadText with 1 and 4 calls in
flight (asyncio client in this process) against rapidocr called in this process one page
at a time (its sessions use both cores; the served models one thread each). Medians of
`--repeat` runs. Writes benchmarks/results/ocr.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from processes import start, stop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelwire.client import AsyncClient  # noqa: E402
from tests.ocr_models import (  # noqa: E402
    CHINESE,
    ENGLISH,
    character_accuracy,
    import_rapidocr,
    page,
    png,
    rapidocr_lines,
)

PAGES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "English, DejaVu Sans 28 px": (ENGLISH[:6], {"kind": "sans"}),
    "English, DejaVu Serif 24 px": (ENGLISH[6:], {"kind": "serif", "size": 24}),
    "English, DejaVu Sans Mono 22 px": (ENGLISH[:6], {"kind": "mono", "size": 22}),
    "Chinese, WenQuanYi 28 px": (CHINESE[:6], {"kind": "chinese"}),
    "Chinese, WenQuanYi 32 px": (CHINESE[6:], {"kind": "chinese", "size": 32}),
    "English, turned 8 degrees": (ENGLISH[:4], {"angle": 8}),
    "Chinese, turned -10 degrees": (CHINESE[:4], {"kind": "chinese", "angle": -10}),
    "English, noise sigma 25": (ENGLISH[:4], {"noise": 25}),
    "Chinese, upside down": (CHINESE[:4], {"kind": "chinese", "angle": 180}),
}


async def served(
    target: str, pictures: list[bytes], in_flight: int
) -> tuple[float, list[list[str]]]:
    async with AsyncClient(target, timeout=300) as client:
        slots = asyncio.Semaphore(in_flight)

        async def one(data: bytes) -> list[str]:
            async with slots:
                return [line.text for line in (await client.read_text(data, model="ocr")).lines]

        start_time = time.perf_counter()
        read = await asyncio.gather(*(one(p) for p in pictures))
        return len(pictures) / (time.perf_counter() - start_time), list(read)


def raw(pictures: list[bytes]) -> float:
    start_time = time.perf_counter()
    for data in pictures:
        rapidocr_lines(data)
    return len(pictures) / (time.perf_counter() - start_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pictures = [png(page(lines, **drawing)) for lines, drawing in PAGES.values()]
    runs: dict[str, list[float]] = {}
    accuracy: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as work:
        repository = Path(work) / "models"
        repository.mkdir()
        import_rapidocr(repository)
        server, target = start(
            [
                sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1",
                "--port", "0", "--no-default-model", "--model-repository", str(repository),
                "--data-dir", str(Path(work) / "d"),
            ]
        )  # fmt: skip
        try:
            _, read = asyncio.run(served(target, pictures, 1))
            for (name, (drawn, drawing)), ours, data in zip(
                PAGES.items(), read, pictures, strict=True
            ):
                # Upside down, the last line drawn is the first one read.
                lines = drawn[::-1] if drawing.get("angle") == 180 else drawn
                reference = rapidocr_lines(data)
                accuracy[name] = {
                    "modelwire": character_accuracy(lines, ours),
                    "rapidocr": character_accuracy(lines, reference),
                    "modelwire_vs_rapidocr": character_accuracy(reference, ours),
                }
            for _ in range(args.repeat):
                runs.setdefault("rapidocr", []).append(raw(pictures))
                for in_flight in (1, 4):
                    rate, _ = asyncio.run(served(target, pictures, in_flight))
                    runs.setdefault(f"served-{in_flight}", []).append(rate)
        finally:
            stop(server)
    medians = {key: statistics.median(values) for key, values in runs.items()}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    result: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "accuracy": accuracy,
        "runs": runs,
        "pictures_per_s": medians,
    }
    out = ROOT / "benchmarks" / "results" / "ocr.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print("| page | modelwire | rapidocr | modelwire against rapidocr |")
    print("|---|---|---|---|")
    for name, scores in accuracy.items():
        print(
            f"| {name} | {scores['modelwire']:.3f} | {scores['rapidocr']:.3f} | "
            f"{scores['modelwire_vs_rapidocr']:.3f} |"
        )
    base = medians["rapidocr"]
    print(f"\nrapidocr in-process: {base:.2f} pictures/s")
    for in_flight in (1, 4):
        rate = medians[f"served-{in_flight}"]
        print(f"ReadText, {in_flight} in flight: {rate:.2f} pictures/s ({rate / base:.2f} x)")


if __name__ == "__main__":
    main()
