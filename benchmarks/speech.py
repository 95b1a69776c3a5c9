"""Word error rate per voice, with and without a grammar, through Transcribe and
TranscribeStream; and audio seconds decoded per second, served against PocketSphinx
in-process, in one run.

    python benchmarks/speech.py [--repeat 3]

Imports PocketSphinx's US-English model (`modelwire import pocketsphinx`) into a
temporary repository and serves it with `modelwire serve`. The 30 command sentences of
tests/data/speech/commands.txt are spoken by three espeak-ng voices (US English, its
`+f2` variant, British English), converted to 16 kHz by soxr. For each voice:
- WER through Transcribe (the whole file) and through TranscribeStream (100 ms chunks,
  sent as fast as the server takes them), with the model's language model and with a
  JSGF grammar of the 30 commands;
- throughput: every file of the voice through Transcribe with 2 calls in flight (the
  model's 2 decoders), against PocketSphinx in-process decoding the same files in the
  same 100 ms blocks on 2 threads. Medians of `--repeat` runs.
Writes benchmarks/results/speech.json and prints Markdown tables.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from processes import start, stop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelwire.client import AsyncClient  # noqa: E402
from tests.speech_models import (  # noqa: E402
    COMMANDS,
    RATE,
    VOICES,
    Reference,
    command_grammar,
    import_pocketsphinx,
    pcm16,
    synthesize,
    word_error_rate,
)

MODEL = "pocketsphinx-en-us"
CHUNK = RATE // 10 * 2


async def transcribe(target: str, files: list[Path], grammar: str | None) -> list[str]:
    async with AsyncClient(target, timeout=300) as client:
        slots = asyncio.Semaphore(2)

        async def one(file: Path) -> str:
            async with slots:
                return (await client.transcribe(file, model=MODEL, grammar=grammar)).text

        return list(await asyncio.gather(*(one(f) for f in files)))


async def stream(target: str, files: list[Path], grammar: str | None) -> list[str]:
    async with AsyncClient(target, timeout=300) as client:

        async def one(file: Path) -> str:
            data = pcm16(file).astype("<i2").tobytes()
            chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
            answers = client.transcribe_stream(
                chunks, sample_rate=RATE, model=MODEL, grammar=grammar
            )
            (final,) = [a.text async for a in answers if a.final]
            return final

        slots = asyncio.Semaphore(2)

        async def limited(file: Path) -> str:
            async with slots:
                return await one(file)

        return list(await asyncio.gather(*(limited(f) for f in files)))


def raw_rate(files: list[Path]) -> float:
    """Audio seconds per second, PocketSphinx in-process on 2 threads (one decoder each)."""
    audio = [pcm16(f) for f in files]
    references = [Reference(), Reference()]
    start_time = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        halves = [audio[0::2], audio[1::2]]
        list(pool.map(lambda i: [references[i].decode(a) for a in halves[i]], (0, 1)))
    seconds = sum(len(a) for a in audio) / RATE
    return seconds / (time.perf_counter() - start_time)


def served_rate(target: str, files: list[Path]) -> float:
    seconds = sum(len(pcm16(f)) for f in files) / RATE
    start_time = time.perf_counter()
    asyncio.run(transcribe(target, files, None))
    return seconds / (time.perf_counter() - start_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    grammar = command_grammar()
    wer: dict[str, float] = {}
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        repository = Path(work) / "models"
        repository.mkdir()
        import_pocketsphinx(repository)
        corpus = {
            voice: [
                synthesize(text, voice, Path(work) / f"{voice}-{i}.wav")
                for i, text in enumerate(COMMANDS)
            ]
            for voice in VOICES
        }
        server, target = start(
            [
                sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1",
                "--port", "0", "--no-default-model", "--model-repository", str(repository),
                "--data-dir", str(Path(work) / "d"),
            ]
        )  # fmt: skip
        try:
            for voice, files in corpus.items():
                for name, given in (("lm", None), ("grammar", grammar)):
                    unary = asyncio.run(transcribe(target, files, given))
                    streamed = asyncio.run(stream(target, files, given))
                    wer[f"{voice}/{name}/Transcribe"] = word_error_rate(COMMANDS, unary)
                    wer[f"{voice}/{name}/TranscribeStream"] = word_error_rate(COMMANDS, streamed)
            files = corpus["en-us"]
            for _ in range(args.repeat):
                runs.setdefault("raw", []).append(raw_rate(files))
                runs.setdefault("served", []).append(served_rate(target, files))
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
        "sentences": len(COMMANDS),
        "wer": wer,
        "runs": runs,
        "audio_seconds_per_s": medians,
    }
    out = ROOT / "benchmarks" / "results" / "speech.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| voice | WER, language model | WER, grammar of the commands |")
    print("|---|---|---|")
    for voice in VOICES:
        cells = []
        for name in ("lm", "grammar"):
            whole = wer[f"{voice}/{name}/Transcribe"]
            chunked = wer[f"{voice}/{name}/TranscribeStream"]
            cells.append(f"{whole:.2f} / {chunked:.2f}")
        print(f"| {voice} | {cells[0]} | {cells[1]} |")
    raw_speed, served_speed = medians["raw"], medians["served"]
    print(
        f"\naudio s per s, 2 in flight: raw {raw_speed:.1f}, served {served_speed:.1f}, "
        f"served / raw {served_speed / raw_speed:.2f}"
    )


if __name__ == "__main__":
    main()
