"""`modelwire transcribe`: speech to text, whole files or streamed as if captured live."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import TargetOption, connected, fail

__all__ = ["transcribe"]

_CHUNK_S = 0.1


def transcribe(
    files: Annotated[list[Path], typer.Argument(help="Audio files: WAV, FLAC, OGG or MP3.")],
    model: Annotated[str, typer.Option(help="The speech-recognition model's name.")] = "",
    target: TargetOption = "localhost:50051",
    version: Annotated[
        int | None, typer.Option(help="Model version (default: the model's).")
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            help="Send one file as raw PCM over TranscribeStream in 100 ms chunks and print "
            "the partial hypotheses as they change."
        ),
    ] = False,
    realtime: Annotated[
        bool, typer.Option(help="With --stream: send at the audio's own pace.")
    ] = True,
    phrases: Annotated[
        list[str] | None,
        typer.Option("--phrase", help="A phrase the speaker says (repeat for more)."),
    ] = None,
    grammar: Annotated[
        Path | None, typer.Option(help="A JSGF grammar file of what the speaker says.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 120.0,
) -> None:
    """Print each file's transcript: `FILE<TAB>text`, one line per file (with --stream,
    the partial hypotheses, then the final text of each utterance)."""
    try:
        grammar_text = grammar.read_text(encoding="utf-8") if grammar is not None else None
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"{grammar}: cannot read the grammar ({error})") from None
    if stream:
        if len(files) != 1:
            raise fail("--stream takes one file")
        _stream(files[0], model, target, version, realtime, phrases, grammar_text)
        return
    with connected(target, timeout=timeout) as client:
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as error:
                raise fail(f"{file}: {error.strerror}") from None
            result = client.transcribe(
                data, model=model, version=version, grammar=grammar_text, phrases=phrases
            )
            typer.echo(f"{file}\t{result.text}")


def _stream(
    file: Path,
    model: str,
    target: str,
    version: int | None,
    realtime: bool,
    phrases: list[str] | None,
    grammar: str | None,
) -> None:
    try:
        import soundfile
    except ImportError:
        raise fail(
            "--stream reads the file with soundfile: pip install 'modelwire[speech]'"
        ) from None
    try:
        samples, rate = soundfile.read(file, dtype="int16", always_2d=True)
    except (OSError, RuntimeError) as error:
        raise fail(f"{file}: not an audio file this command reads ({error})") from None
    channels = samples.shape[1]
    frames = max(1, int(rate * _CHUNK_S))

    def chunks() -> Iterator[bytes]:
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(samples), frames)):
            if realtime:  # the pace of a microphone, not synchronisation
                time.sleep(max(0.0, start + index * _CHUNK_S - time.monotonic()))
            yield samples[offset : offset + frames].tobytes()

    with connected(target, timeout=None) as client:
        answers = client.transcribe_stream(
            chunks(),
            sample_rate=rate,
            channels=channels,
            model=model,
            version=version,
            grammar=grammar,
            phrases=phrases,
        )
        for answer in answers:
            if answer.final:
                typer.echo(f"{file}\t{answer.text}")
            else:
                typer.echo(f"partial\t{answer.text}", err=True)
