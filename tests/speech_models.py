"""The real speech model of the tests: CMU PocketSphinx's US-English model from its
PyPI wheel, imported through `modelwire import pocketsphinx`; speech synthesised by
espeak-ng; PocketSphinx's own decode of the same audio as the reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests import processes
from tests.requirements import need_module, need_program

__all__ = [
    "COMMANDS",
    "RATE",
    "VOICES",
    "Reference",
    "command_grammar",
    "import_pocketsphinx",
    "pcm16",
    "speech_variant",
    "synthesize",
    "word_error_rate",
]

COMMANDS = (Path(__file__).parent / "data" / "speech" / "commands.txt").read_text().splitlines()
#: espeak-ng voices: US English, the same with a female variant, British English.
VOICES = ("en-us", "en-us+f2", "en")
RATE = 16_000
#: How the model decodes: 100 ms blocks, each utterance from a fresh state.
_BLOCK = RATE // 10


def import_pocketsphinx(repository: Path, name: str = "pocketsphinx-en-us") -> Path:
    need_module("pocketsphinx", "pocketsphinx (the speech extra)")
    result = processes.run(
        [sys.executable, "-m", "modelwire", "import", "pocketsphinx", "--into", str(repository),
         "--name", name],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return repository / name


def synthesize(text: str, voice: str, path: Path) -> Path:
    """`text` spoken by espeak-ng's `voice`, as a 16 kHz 16-bit mono WAV at `path`
    (espeak-ng speaks at 22,050 Hz; soxr converts, as the server would)."""
    espeak = need_program("espeak-ng", "espeak-ng (the Debian package espeak-ng)")
    soundfile = need_module("soundfile", "soundfile (the speech extra)")
    soxr = need_module("soxr", "soxr (the speech extra)")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run([espeak, "-v", voice, "-w", str(raw), text], check=True, timeout=60)
    samples, rate = soundfile.read(raw, dtype="float32")
    raw.unlink()
    resampled = soxr.resample(samples, rate, RATE, quality="HQ")
    soundfile.write(path, np.clip(resampled, -1, 1), RATE, subtype="PCM_16")
    return path


def pcm16(path: Path) -> np.ndarray:
    """A WAV's samples as int16 (what PocketSphinx reads)."""
    soundfile = need_module("soundfile", "soundfile (the speech extra)")
    samples, _ = soundfile.read(path, dtype="int16")
    result: np.ndarray = samples
    return result


def _decoder() -> Any:
    pocketsphinx = need_module("pocketsphinx", "pocketsphinx (the speech extra)")
    model = Path(pocketsphinx.get_model_path()) / "en-us"
    return pocketsphinx.Decoder(
        hmm=str(model / "en-us"),
        dict=str(model / "cmudict-en-us.dict"),
        lm=str(model / "en-us.lm.bin"),
        samprate=RATE,
        loglevel="FATAL",
    )


class Reference:
    """PocketSphinx itself, configured as the served model: 100 ms blocks, a fresh
    state per utterance, the language model or a JSGF grammar."""

    def __init__(self) -> None:
        self._decoder = _decoder()

    def decode(self, samples: np.ndarray, grammar: str | None = None) -> str:
        decoder = self._decoder
        if grammar is not None:
            decoder.add_jsgf_string("reference", grammar)
            decoder.activate_search("reference")
        try:
            decoder.reinit_feat()
            decoder.start_utt()
            data = samples.astype("<i2")
            for start in range(0, len(data), _BLOCK):
                decoder.process_raw(data[start : start + _BLOCK].tobytes())
            decoder.end_utt()
            hypothesis = decoder.hyp()
            return hypothesis.hypstr if hypothesis is not None else ""
        finally:
            if grammar is not None:
                decoder.activate_search()
                decoder.remove_search("reference")


def command_grammar() -> str:
    """A JSGF grammar whose sentences are COMMANDS."""
    return "#JSGF V1.0;\ngrammar commands;\npublic <command> = " + " | ".join(COMMANDS) + ";\n"


def word_error_rate(truths: list[str], hypotheses: list[str]) -> float:
    jiwer = need_module("jiwer", "jiwer (the dev extra)")
    rate: float = jiwer.wer(truths, hypotheses)
    return rate


def speech_variant(repository: Path, source: Path, name: str, **speech: Any) -> Path:
    """A copy of the model folder `source` named `name`, its files hard-linked (the
    language model is 27 MB), with `speech` changed in its [speech] table."""
    import shutil
    import tomllib

    import tomli_w

    target = repository / name
    shutil.copytree(source, target, copy_function=os.link)
    toml = target / "model.toml"
    config = tomllib.loads(toml.read_text())
    config["name"] = name
    config["speech"].update(speech)
    toml.unlink()  # a hard link: write a new file, not through the shared one
    toml.write_text(tomli_w.dumps(config))
    return target
