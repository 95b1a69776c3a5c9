"""Fixtures: real servers on free ports, real clients."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest

from modelwire import assembly
from modelwire.assembly import RunningServer
from modelwire.settings import load_settings
from tests import processes
from tests.requirements import missing

_LISTENING = re.compile(r"serving .* on 127\.0\.0\.1:(\d+)")
#: The side servers' start lines: which port each took.
_SIDE_PORTS = {
    "rest": re.compile(r"REST gateway on https?://127\.0\.0\.1:(\d+)"),
    "health": re.compile(r"gRPC health \(plaintext\) on 127\.0\.0\.1:(\d+)"),
    "metrics": re.compile(r"metrics on (?:https?://)?127\.0\.0\.1:(\d+)"),
}


@pytest.fixture
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """An in-process server with the default model on 127.0.0.1, any free port, a fresh
    data directory."""
    running = await assembly.start_server(
        load_settings(
            hosts=["127.0.0.1"],
            port=0,
            rest_port="off",
            threads=2,
            data_dir=tmp_path_factory.mktemp("data"),
        )
    )
    yield running
    await running.stop(None)


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerFactory]:
    """Start in-process servers with the given settings (on 127.0.0.1, a free port, a
    fresh data directory; no REST unless asked for)."""
    started: list[RunningServer] = []

    async def start(**settings: Any) -> RunningServer:
        options: dict[str, Any] = {
            "hosts": ["127.0.0.1"],
            "port": 0,
            "rest_port": "off",
            "threads": 2,
            "data_dir": tmp_path_factory.mktemp("data"),
        }
        options.update(settings)
        running = await assembly.start_server(load_settings(**options))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop(None)


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@dataclass
class ServeProcess:
    """`modelwire serve` running in a subprocess."""

    process: subprocess.Popen[str]
    port: int
    log: list[str]
    reader: threading.Thread | None = None
    #: The data directory start_serve made for it (none given), removed by stop_serve.
    own_data_dir: Path | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def side_port(self, name: str) -> int:
        """The port the "rest", "health" or "metrics" server took (asked for port 0)."""
        for line in self.log:
            if match := _SIDE_PORTS[name].search(line):
                return int(match.group(1))
        raise AssertionError(f"modelwire serve logged no {name} port:\n" + "".join(self.log))


def start_serve(
    *args: str,
    timeout: float = 60.0,
    launcher: Sequence[str] = ("-m", "modelwire"),
    default_rest_port: bool = False,
) -> ServeProcess:
    """Run `modelwire serve ARGS` and wait for its "serving ... on" log line. Without
    --rest-port among ARGS, the server has no REST gateway (unless `default_rest_port`);
    without --data-dir, a fresh data directory. `launcher` is what Python runs, "serve"
    and ARGS its arguments."""
    if "--rest-port" not in args and not default_rest_port:
        args = (*args, "--rest-port", "off")
    own_data_dir = None
    if "--data-dir" not in args:
        own_data_dir = Path(tempfile.mkdtemp(prefix="modelwire-data-"))
        args = (*args, "--data-dir", str(own_data_dir))
    process = processes.popen(
        [sys.executable, *launcher, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        log.append(line)
        if match := _LISTENING.search(line):
            # Keep reading (the server logs every call): a full pipe would block it.
            reader = threading.Thread(target=_drain, args=(process, log), daemon=True)
            reader.start()
            return ServeProcess(process, int(match.group(1)), log, reader, own_data_dir)
    process.kill()
    process.wait()
    process.stdout.close()
    if own_data_dir is not None:
        shutil.rmtree(own_data_dir, ignore_errors=True)
    if any("cannot listen" in line for line in log):
        raise AssertionError("the port is taken by another program:\n" + "".join(log))
    raise AssertionError("modelwire serve did not start:\n" + "".join(log))


def _drain(process: subprocess.Popen[str], log: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
    process.stdout.close()


def unused_port() -> int:
    """A TCP port that nothing listens on right now, for calls that must find no server
    (never for starting one: bind port 0 and read the port back instead)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rest_url(server: RunningServer, scheme: str = "http") -> str:
    """The base URL of an in-process server's REST gateway (started with rest_port=0)."""
    assert server.rest is not None, "the server was started without REST"
    return f"{scheme}://127.0.0.1:{server.rest.port}"


def stop_serve(serve: ServeProcess) -> int:
    if serve.process.poll() is None:
        serve.process.send_signal(signal.SIGTERM)
    try:
        code = serve.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        serve.process.kill()
        raise
    if serve.reader is not None:
        serve.reader.join(timeout=30)
    if serve.own_data_dir is not None:
        shutil.rmtree(serve.own_data_dir, ignore_errors=True)
    return code


@pytest.fixture(scope="module")
def tensor_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`modelwire serve` with the tensor models of tests.tensor_models."""
    from tests.tensor_models import tensor_repository  # onnx: the dev tools

    repository = tensor_repository(tmp_path_factory.mktemp("models"))
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--model-repository", str(repository))
    yield serve
    stop_serve(serve)


@pytest.fixture(scope="session")
def text_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with MiniLM (tests.text_models), imported once per session:
    `minilm` refuses texts longer than its 256 tokens, `minilm-cut` cuts them; and
    `topics`, a text classifier over minilm trained on tests/data/text/topics.csv."""
    from tests.text_models import add_topics_classifier, import_minilm

    repository = tmp_path_factory.mktemp("text-models")
    import_minilm(repository, "minilm")
    import_minilm(repository, "minilm-cut", "--truncate")
    add_topics_classifier(repository)
    return repository


def _serving(repository: Path) -> Iterator[ServeProcess]:
    """`modelwire serve` with `repository`, digits and the REST gateway, until the end."""
    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0", "--rest-port", "0",
        "--model-repository", str(repository),
    )  # fmt: skip
    yield serve
    stop_serve(serve)


@pytest.fixture(scope="module")
def text_serve(text_repository: Path) -> Iterator[ServeProcess]:
    """`modelwire serve` with MiniLM and the REST gateway."""
    yield from _serving(text_repository)


@pytest.fixture(scope="session")
def speech_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with PocketSphinx's US-English model (tests.speech_models):
    `pocketsphinx-en-us` (2 decoders), `pocketsphinx-one` (1 decoder) and
    `pocketsphinx-brief` (1 decoder, streams ended after 1 s without a message)."""
    from tests.speech_models import import_pocketsphinx, speech_variant

    repository = tmp_path_factory.mktemp("speech-models")
    model = import_pocketsphinx(repository)
    speech_variant(repository, model, "pocketsphinx-one", decoders=1)
    speech_variant(repository, model, "pocketsphinx-brief", decoders=1, idle_timeout_s=1.0)
    return repository


@pytest.fixture(scope="module")
def speech_serve(speech_repository: Path) -> Iterator[ServeProcess]:
    """`modelwire serve` with the speech models, digits and the REST gateway."""
    yield from _serving(speech_repository)


@pytest.fixture(scope="session")
def ocr_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with the PP-OCR models (tests.ocr_models): the pipeline `ocr`
    over `ocr-det`, `ocr-cls` and `ocr-rec`; `ocr-50`, reading at most 50 lines; and
    `ocr-broken`, whose recogniser is not served."""
    from tests.ocr_models import import_rapidocr, ocr_variant

    repository = tmp_path_factory.mktemp("ocr-models")
    import_rapidocr(repository)
    ocr_variant(repository, "ocr-50", max_lines=50)
    ocr_variant(repository, "ocr-broken", recognizer="no-such-model")
    return repository


@pytest.fixture(scope="module")
def ocr_serve(ocr_repository: Path) -> Iterator[ServeProcess]:
    """`modelwire serve` with the OCR models, digits and the REST gateway."""
    yield from _serving(ocr_repository)


@pytest.fixture(scope="session")
def serve_process() -> Iterator[ServeProcess]:
    """One `modelwire serve` subprocess shared by the tests that only read from it."""
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--threads", "2")
    yield serve
    stop_serve(serve)


@dataclass
class RestServeProcess:
    """`modelwire serve` with its REST gateway, in a subprocess."""

    serve: ServeProcess
    rest_port: int

    @property
    def rest_target(self) -> str:
        return f"127.0.0.1:{self.rest_port}"


@pytest.fixture(scope="session")
def rest_serve_process() -> Iterator[RestServeProcess]:
    """One `modelwire serve --rest-port` subprocess for the tests that talk HTTP to it."""
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--rest-port", "0")
    yield RestServeProcess(serve, serve.side_port("rest"))
    assert stop_serve(serve) == 0


@pytest.fixture
def tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


#: A PostgreSQL server the tests may create databases on (scripts/test_postgres.sh).
TEST_DATABASE_URL = os.environ.get("MODELWIRE_TEST_DATABASE_URL", "")


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server, dropped afterwards; skips
    the test (saying why) where there is no server."""
    if not TEST_DATABASE_URL:
        missing(
            "a PostgreSQL server in MODELWIRE_TEST_DATABASE_URL "
            "(scripts/test_postgres.sh starts one; .ci/run does)"
        )
    import psycopg

    name = f"modelwire_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Run the test against SQLite (None: the data directory's) and PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres_database() as url:
        yield url
