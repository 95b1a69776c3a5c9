"""A speech model's pool of decoders on an in-process server: callers beyond the pool
wait their turn, a stream holds its decoder until it ends, and a client that disappears
mid-utterance gives its decoder back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from modelwire.api.v1 import speech_pb2, speech_pb2_grpc
from modelwire.assembly import RunningServer
from modelwire.client import AsyncClient
from modelwire.core.backends.pocketsphinx import PocketSphinxBackend
from modelwire.core.models import VersionState
from tests.conftest import ServerFactory
from tests.speech_models import COMMANDS, RATE, command_grammar, synthesize
from tests.waiting import wait_until

ONE = "pocketsphinx-one"  # [speech] decoders = 1
CHUNK = RATE // 10 * 2  # 100 ms of 16-bit mono


@pytest.fixture
async def speech_server(start_server: ServerFactory, speech_repository: Path) -> RunningServer:
    return await start_server(model_repositories=[speech_repository])


def _backend(server: RunningServer) -> PocketSphinxBackend:
    backend = server.engine.models.resolve(ONE).backend
    assert isinstance(backend, PocketSphinxBackend)
    return backend


def _config(model: str = ONE) -> speech_pb2.TranscribeStreamRequest:
    fmt = speech_pb2.AudioFormat(sample_rate=RATE)
    return speech_pb2.TranscribeStreamRequest(
        config=speech_pb2.StreamConfig(model=model, format=fmt)
    )


async def test_callers_beyond_the_pool_wait_and_all_are_answered(
    speech_server: RunningServer, tmp_path: Path
) -> None:
    files = [
        synthesize(text, "en-us", tmp_path / f"{i}.wav") for i, text in enumerate(COMMANDS[:4])
    ]
    target = f"127.0.0.1:{speech_server.port}"
    async with AsyncClient(target, timeout=120) as client:
        results = await asyncio.gather(
            *(client.transcribe(f, model=ONE, grammar=command_grammar()) for f in files)
        )
    assert [r.text for r in results] == COMMANDS[:4]
    backend = _backend(speech_server)
    assert backend.lent == 0


async def test_a_stream_holds_its_decoder_and_a_vanished_client_frees_it(
    speech_server: RunningServer, tmp_path: Path
) -> None:
    file = synthesize(COMMANDS[0], "en-us", tmp_path / "0.wav")
    backend = _backend(speech_server)
    target = f"127.0.0.1:{speech_server.port}"
    channel = grpc.aio.insecure_channel(target)
    call = speech_pb2_grpc.SpeechServiceStub(channel).TranscribeStream()
    await call.write(_config())
    await call.write(speech_pb2.TranscribeStreamRequest(audio=bytes(RATE)))
    await wait_until(lambda: backend.lent == 1)
    async with AsyncClient(target, timeout=120) as client:
        waiting = asyncio.ensure_future(client.transcribe(file, model=ONE, phrases=COMMANDS))
        # The stream has the only decoder: the unary call waits while it is open.
        done, _ = await asyncio.wait([waiting], timeout=0.5)
        assert not done
        await channel.close(None)  # the client disappears mid-utterance
        result = await waiting
    assert result.text == COMMANDS[0]
    await wait_until(lambda: backend.lent == 0)
    served = speech_server.engine.models.resolve(ONE)
    assert served.in_flight == 0
    assert served.state == VersionState.READY


async def test_a_stream_that_goes_quiet_is_ended_and_frees_its_decoder(
    speech_server: RunningServer,
) -> None:
    brief = speech_server.engine.models.resolve("pocketsphinx-brief").backend
    assert isinstance(brief, PocketSphinxBackend)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{speech_server.port}") as channel:
        call = speech_pb2_grpc.SpeechServiceStub(channel).TranscribeStream()
        await call.write(_config("pocketsphinx-brief"))
        await call.write(speech_pb2.TranscribeStreamRequest(audio=bytes(RATE)))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in call:
                pass
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sent nothing for 1 s" in (ended.value.details() or "")
    await wait_until(lambda: brief.lent == 0)


async def test_a_sender_faster_than_the_decoder_is_held_back(
    start_server: ServerFactory, speech_repository: Path
) -> None:
    """While the decoder cannot keep up (here: the engine's one thread is held), the
    server reads no more chunks, so HTTP/2 flow control stops the sender well before it
    has sent everything; nothing piles up in the server."""
    import threading

    from tests.waiting import wait_for_quiet

    server = await start_server(model_repositories=[speech_repository], threads=1)
    backend = _backend(server)
    executor = server.engine._executor  # the engine's thread pool: held to stall decoding
    release = threading.Event()
    chunk = bytes(CHUNK)
    total = 10_000  # 1,000 s of audio, 32 MB: far more than the flow-control windows
    sent = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = speech_pb2_grpc.SpeechServiceStub(channel).TranscribeStream()

        async def send() -> None:
            nonlocal sent
            await call.write(_config())
            for _ in range(total):
                await call.write(speech_pb2.TranscribeStreamRequest(audio=chunk))
                sent += 1

        sending = asyncio.ensure_future(send())
        await wait_until(lambda: backend.lent == 1)  # decoding has started
        held = asyncio.get_running_loop().run_in_executor(executor, release.wait, 60)
        stalled_at = await wait_for_quiet(lambda: sent)
        assert stalled_at < total // 3, stalled_at  # here: about 2,000 (6 MB in windows)
        release.set()
        await held
        sending.cancel()
        call.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    await wait_until(lambda: backend.lent == 0)
