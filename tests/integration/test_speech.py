"""Speech recognition end to end: PocketSphinx's US-English model imported by `modelwire
import pocketsphinx`, served by `modelwire serve`, fed espeak-ng speech over gRPC
(Transcribe, TranscribeStream, ModelInfer), REST (:transcribe), the SDK and the CLI.

The model's accuracy on synthetic speech is the model's (benchmarks/speech_wer.py
reports it per voice); what the tests hold the server to is fidelity: the served
transcripts are PocketSphinx's own decode of the same audio, a stream's are a whole
file's, and a grammar of the spoken commands brings the error rate under 0.1."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelwire.api.v1 import speech_pb2, speech_pb2_grpc
from modelwire.client import END_UTTERANCE, AsyncClient, Chunk, Client, TranscriptResult
from modelwire.errors import InvalidInput, NotFound
from tests.conftest import ServeProcess
from tests.integration.cli.test_cli import modelwire
from tests.requirements import need_module
from tests.speech_models import (
    COMMANDS,
    RATE,
    Reference,
    command_grammar,
    pcm16,
    synthesize,
    word_error_rate,
)

MODEL = "pocketsphinx-en-us"
CHUNK_BYTES = RATE // 10 * 2  # 100 ms of 16-bit mono


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Every command spoken by two voices, as 16 kHz WAV files."""
    folder = tmp_path_factory.mktemp("speech")
    return {
        voice: [
            synthesize(text, voice, folder / f"{voice}-{i}.wav") for i, text in enumerate(COMMANDS)
        ]
        for voice in ("en-us+f2", "en-us")
    }


async def _transcribe_all(
    target: str, files: list[Path], **options: object
) -> list[TranscriptResult]:
    async with AsyncClient(target, timeout=120) as client:
        return list(
            await asyncio.gather(
                *(client.transcribe(f, model=MODEL, **options) for f in files)  # type: ignore[arg-type]
            )
        )


def _chunks(samples: np.ndarray) -> list[bytes]:
    data = samples.astype("<i2").tobytes()
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


async def test_transcripts_are_pocketsphinx_own_decode(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    files = corpus["en-us+f2"]
    assert len(files) >= 30
    served = await _transcribe_all(speech_serve.target, files)
    reference = Reference()
    expected = [reference.decode(pcm16(f)) for f in files]
    assert [r.text for r in served] == expected
    assert all(r.model == MODEL and r.version == 1 for r in served)
    # Real recognition, not an echo of the truth: PocketSphinx gets some words right.
    assert word_error_rate(COMMANDS, [r.text for r in served]) < 0.9


async def test_word_timings_lie_within_the_audio(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    (result,) = await _transcribe_all(
        speech_serve.target, corpus["en-us"][:1], phrases=[COMMANDS[0]]
    )
    assert result.text == COMMANDS[0]
    assert [w.word for w in result.words] == COMMANDS[0].split()
    assert result.duration_s == pytest.approx(len(pcm16(corpus["en-us"][0])) / RATE, abs=1e-3)
    starts = [w.start_s for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_s < w.end_s <= result.duration_s + 0.01 for w in result.words)
    assert all(0 <= w.confidence <= 1 for w in result.words)


async def test_a_grammar_of_the_commands_brings_the_error_rate_under_a_tenth(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    grammar = command_grammar()
    for voice, files in corpus.items():
        with_grammar = await _transcribe_all(speech_serve.target, files, grammar=grammar)
        assert word_error_rate(COMMANDS, [r.text for r in with_grammar]) < 0.1, voice
    # Through TranscribeStream in 100 ms chunks: the same words, file by file.
    files = corpus["en-us+f2"]
    async with AsyncClient(speech_serve.target, timeout=120) as client:
        streamed = []
        for file in files:
            answers = client.transcribe_stream(
                _chunks(pcm16(file)), sample_rate=RATE, model=MODEL, grammar=grammar
            )
            streamed.extend([a.text async for a in answers if a.final])
    assert word_error_rate(COMMANDS, streamed) < 0.1
    unary = await _transcribe_all(speech_serve.target, files, grammar=grammar)
    assert streamed == [r.text for r in unary]
    reference = Reference()
    sample = corpus["en-us"][:3]
    with_phrases = await _transcribe_all(speech_serve.target, sample, phrases=COMMANDS)
    assert [r.text for r in with_phrases] == [
        reference.decode(pcm16(f), grammar=_phrases_grammar()) for f in sample
    ]


def _phrases_grammar() -> str:
    alternatives = " | ".join(sorted(set(COMMANDS)))
    return f"#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = {alternatives};\n"


def test_a_stream_gives_partials_early_and_the_unary_finals(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    files = corpus["en-us+f2"][:3]
    samples = [pcm16(f) for f in files]
    first_partial = threading.Event()
    sent_before_partial: list[int] = []

    def chunks() -> Iterator[Chunk]:
        for index, audio in enumerate(samples):
            pieces = _chunks(audio)
            for number, piece in enumerate(pieces):
                if index == 0 and number == len(pieces) // 2:
                    # Half the utterance is out: a partial must come before the rest.
                    assert first_partial.wait(60), "no partial hypothesis after half the audio"
                    sent_before_partial.append(number)
                yield piece
            yield END_UTTERANCE

    with Client(speech_serve.target, timeout=120) as client:
        unary = [client.transcribe(f, model=MODEL).text for f in files]
        answers = []
        for answer in client.transcribe_stream(chunks(), sample_rate=RATE, model=MODEL):
            if not answer.final:
                first_partial.set()
            answers.append(answer)
    finals = [a for a in answers if a.final]
    assert [a.utterance for a in finals] == [0, 1, 2]
    assert [a.text for a in finals] == unary
    assert sent_before_partial  # the generator did wait for a partial mid-utterance
    partials = [a for a in answers if not a.final and a.utterance == 0]
    assert partials, "the first utterance had no partial hypothesis"
    assert all(a.model == MODEL and a.version == 1 for a in answers)


async def test_half_closing_ends_the_last_utterance_and_chunks_split_anywhere(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    file = corpus["en-us"][4]
    data = pcm16(file).astype("<i2").tobytes()
    # Odd sizes: chunks that end mid-sample.
    pieces = [data[i : i + 1001] for i in range(0, len(data), 1001)]
    async with AsyncClient(speech_serve.target, timeout=120) as client:
        unary = await client.transcribe(file, model=MODEL)
        finals = [
            a
            async for a in client.transcribe_stream(pieces, sample_rate=RATE, model=MODEL)
            if a.final
        ]
    assert [a.text for a in finals] == [unary.text]


def test_a_stream_at_another_rate_and_in_stereo_float_is_converted(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    soundfile = need_module("soundfile", "soundfile (the speech extra)")
    file = corpus["en-us"][6]
    mono = pcm16(file).astype(np.float32) / 32768
    stereo = np.stack([mono, mono], axis=1).astype("<f4")
    with Client(speech_serve.target, timeout=120) as client:
        grammar = command_grammar()
        streamed = [
            a
            for a in client.transcribe_stream(
                [stereo.tobytes()],
                sample_rate=RATE,
                encoding="f32le",
                channels=2,
                model=MODEL,
                grammar=grammar,
            )
            if a.final
        ]
        buffer = io.BytesIO()
        soundfile.write(buffer, mono, RATE, format="FLAC")
        flac = client.transcribe(buffer.getvalue(), model=MODEL, grammar=grammar)
    assert [a.text for a in streamed] == [COMMANDS[6]]
    assert flac.text == COMMANDS[6]


def _wav_declaring(frames: int, data: bytes, rate: int = RATE) -> bytes:
    header = b"RIFF" + struct.pack("<I", 36 + frames * 2) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", frames * 2) + data


def _bad_audio() -> dict[str, tuple[bytes, str]]:
    soundfile = need_module("soundfile", "soundfile (the speech extra)")
    tone = (np.sin(np.arange(RATE) / 5) * 8000).astype("<i2")

    def encoded(samples: np.ndarray, rate: int, **options: str) -> bytes:
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, rate, **options)
        return buffer.getvalue()

    flac = bytearray(encoded(tone, RATE, format="FLAC"))
    # STREAMINFO's total sample count (36 bits from byte 21, low nibble) set to 2**36 - 1.
    flac[21] |= 0x0F
    flac[22:26] = b"\xff\xff\xff\xff"
    return {
        "empty": (b"", "the audio is empty"),
        "not audio": (b"this is not a sound file" * 10, "not a file this server reads"),
        "1 hour declared": (_wav_declaring(RATE * 3600, tone.tobytes()), "declares 3600 s"),
        "truncated": (_wav_declaring(RATE * 2, tone.tobytes()), "truncated"),
        "lying FLAC": (bytes(flac), "declares"),
        "AIFF": (encoded(tone, RATE, format="AIFF"), "not supported"),
        "64 channels": (
            encoded(np.zeros((100, 64), np.int16), RATE, format="WAV"),
            "64 channels",
        ),
        "4 kHz": (encoded(tone, 4000, format="WAV"), "sample rate is 4000 Hz"),
    }


def test_bad_audio_is_refused_with_the_reason(speech_serve: ServeProcess) -> None:
    with Client(speech_serve.target, timeout=60) as client:
        for case, (audio, reason) in _bad_audio().items():
            with pytest.raises(InvalidInput) as refused:
                client.transcribe(audio, model=MODEL)
            assert refused.value.status == "INVALID_ARGUMENT", case
            assert reason in refused.value.message, (case, refused.value.message)
        # The server goes on serving.
        silence = _wav_declaring(RATE, bytes(RATE * 2))
        assert client.transcribe(silence, model=MODEL).text == ""
        # A grammar that no path through matches: an empty transcript, not an error.
        assert client.transcribe(silence, model=MODEL, grammar=command_grammar()).text == ""
        noise = (np.random.default_rng(0).normal(0, 3000, RATE * 2)).clip(-32768, 32767)
        noisy = client.transcribe(
            _wav_declaring(RATE * 2, noise.astype("<i2").tobytes()), model=MODEL
        )
        assert noisy.duration_s == pytest.approx(2.0)


def test_bad_requests_are_refused(speech_serve: ServeProcess) -> None:
    silence = _wav_declaring(RATE // 2, bytes(RATE))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"grammar": "not a grammar"}, "not JSGF this model can use"),
        ({"grammar": "#JSGF V1.0; grammar g; public <a> = flibbertigibbet;"}, "dictionary"),
        ({"phrases": ["hello <world>"]}, "phrase 0 is not words"),
        ({"phrases": ["hello"], "grammar": command_grammar()}, "not both"),
        ({"grammar": "#JSGF V1.0; grammar g; import <other.rule>; public <a> = yes;"}, "import"),
        ({"grammar": _nested_grammar(30)}, "expands to more than"),
        ({"model": "digits"}, "not a speech-recognition model"),
    ]
    with Client(speech_serve.target, timeout=60) as client:
        for options, reason in cases:
            arguments = {"model": MODEL, **options}
            with pytest.raises(InvalidInput) as refused:
                client.transcribe(silence, **arguments)
            assert reason in refused.value.message, options
        with pytest.raises(NotFound):
            client.transcribe(silence, model="no-such-model")


def _nested_grammar(depth: int) -> str:
    """Each rule says the one before twice: 2**depth words when expanded."""
    rules = ["<r0> = yes no;", *(f"<r{i}> = <r{i - 1}> <r{i - 1}>;" for i in range(1, depth + 1))]
    return f"#JSGF V1.0; grammar nested; public <top> = <r{depth}>; " + " ".join(rules)


def _stream_error(target: str, messages: list[speech_pb2.TranscribeStreamRequest]) -> str:
    with grpc.insecure_channel(target) as channel:
        stub = speech_pb2_grpc.SpeechServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            list(stub.TranscribeStream(iter(messages), timeout=60))
    error = failed.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    return error.details() or ""


def test_bad_streams_end_with_the_reason(speech_serve: ServeProcess) -> None:
    def config(
        rate: int = RATE, channels: int = 1, model: str = MODEL
    ) -> speech_pb2.TranscribeStreamRequest:
        fmt = speech_pb2.AudioFormat(sample_rate=rate, channels=channels)
        return speech_pb2.TranscribeStreamRequest(
            config=speech_pb2.StreamConfig(model=model, format=fmt)
        )

    audio = speech_pb2.TranscribeStreamRequest(audio=bytes(CHUNK_BYTES))
    empty = speech_pb2.TranscribeStreamRequest(audio=b"")
    cases = [
        ([audio], "the first message of a stream is its config"),
        ([config(), audio, config(rate=8000), audio], "one config message"),
        ([config(), empty], "chunk is empty"),
        ([config(rate=0)], "sample rate is 0 Hz"),
        ([config(channels=64)], "64 channels"),
        ([config(model="digits")], "not a speech-recognition model"),
    ]
    for messages, reason in cases:
        assert reason in _stream_error(speech_serve.target, messages), reason
    # Still serving streams.
    with Client(speech_serve.target, timeout=60) as client:
        answers = list(
            client.transcribe_stream([bytes(CHUNK_BYTES)], sample_rate=RATE, model=MODEL)
        )
    assert [a.text for a in answers if a.final] == [""]


def test_rest_and_the_open_inference_protocol_give_the_same_words(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    file = corpus["en-us"][2]
    rest = f"http://127.0.0.1:{speech_serve.side_port('rest')}"
    with Client(speech_serve.target, timeout=120) as client:
        grpc_text = client.transcribe(file, model=MODEL).text
        samples = (pcm16(file).astype(np.float32) / 32768).reshape(-1)
        outputs = client.infer(MODEL, {"audio": samples})
    assert outputs["text"].reshape(-1)[0].decode() == grpc_text
    reply = httpx.post(
        f"{rest}/v1/models/{MODEL}:transcribe",
        content=file.read_bytes(),
        headers={"content-type": "audio/wav"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["text"] == grpc_text
    assert body["model"] == MODEL
    assert [w["word"] for w in body["words"]] == grpc_text.split()
    phrased = httpx.post(
        f"{rest}/v1/models/{MODEL}/versions/1:transcribe",
        params={"phrase": COMMANDS},
        content=file.read_bytes(),
        headers={"content-type": "audio/wav"},
        timeout=120,
    )
    assert phrased.json()["text"] == COMMANDS[2]
    refused = httpx.post(
        f"{rest}/v1/models/{MODEL}:transcribe",
        content=b"RIFF....",
        headers={"content-type": "audio/wav"},
        timeout=60,
    )
    assert refused.status_code == 400
    assert "not a file this server reads" in refused.json()["error"]
    wrong_type = httpx.post(f"{rest}/v1/models/{MODEL}:transcribe", json={"audio": "x"}, timeout=60)
    assert wrong_type.status_code == 400


def test_the_cli_transcribes_files_and_streams(
    speech_serve: ServeProcess, corpus: dict[str, list[Path]]
) -> None:
    files = corpus["en-us"][:2]
    result = modelwire(
        "transcribe", *map(str, files), "--model", MODEL, "--target", speech_serve.target,
        "--phrase", COMMANDS[0], "--phrase", COMMANDS[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{f}\t{t}" for f, t in zip(files, COMMANDS[:2], strict=True)
    ]
    streamed = modelwire(
        "transcribe", "--stream", "--no-realtime", str(files[0]), "--model", MODEL,
        "--target", speech_serve.target, "--phrase", COMMANDS[0],
    )  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.splitlines() == [f"{files[0]}\t{COMMANDS[0]}"]
    assert "partial\t" in streamed.stderr
