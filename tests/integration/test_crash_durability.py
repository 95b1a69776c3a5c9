"""`kill -9` of the server at unchosen moments: every example an upload summary counted is
still there, whole, the database is intact, and a job that was running is FAILED
"interrupted" on the next start."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelwire.client import Client, Example, TextExample
from modelwire.errors import ModelwireError
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.requirements import need_module


def noise_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


def examples(start: int, stop: int, kind: str = "image") -> Iterator[Example | TextExample]:
    for seed in range(start, stop):
        if kind == "text":
            yield TextExample(str(seed % 3), f"example {seed}: {'many words ' * (seed % 40)}")
        else:
            yield Example(str(seed % 3), noise_png(seed))


def serve_on(data: Path) -> ServeProcess:
    return start_serve("--host", "127.0.0.1", "--port", "0", "--data-dir", str(data))


@pytest.mark.parametrize("kind", ["image", "text"])
def test_kill_during_uploads_loses_nothing_accepted(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "data"
    serve = serve_on(data)
    with Client(serve.target) as client:
        client.create_dataset("d", kind=kind)
    accepted = 0
    rng = np.random.default_rng(7)
    for round_ in range(3):
        with Client(serve.target) as client:
            first = examples(round_ * 10**6, round_ * 10**6 + 150, kind)
            summary = client.upload_examples("d", first)
            assert summary.accepted == 150
            accepted += summary.accepted

            # A second stream, cut by kill -9 somewhere in the middle.
            def stream(base: int = round_ * 10**6 + 500_000, target: str = serve.target) -> None:
                # The server dies under it.
                with Client(target) as other, contextlib.suppress(ModelwireError):
                    other.upload_examples("d", examples(base, base + 100_000, kind))

            uploader = threading.Thread(target=stream)
            uploader.start()
            time.sleep(float(rng.uniform(0.3, 1.5)))
            serve.process.kill()
            serve.process.wait()
            uploader.join(timeout=60)
            stop_serve(serve)
        serve = serve_on(data)
        with Client(serve.target) as client:
            stored = client.get_dataset("d").examples
            assert stored >= accepted
            exported = 0
            for example in client.export_examples("d"):
                content = example.text.encode() if kind == "text" else example.image
                assert hashlib.sha256(content).hexdigest() == example.sha256
                exported += 1
            assert exported == stored
            accepted = stored  # what survived is the new floor
    assert stop_serve(serve) == 0
    with sqlite3.connect(data / "modelwire.db") as database:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def trainer_processes(data: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "modelwire.core.training.trainer" in command and str(data) in command:
            found.append(int(entry.name))
    return found


def test_kill_during_training_fails_the_job_on_restart(tmp_path: Path) -> None:
    need_module("torch", 'PyTorch (pip install -e ".[train]")')
    from modelwire.api.v1 import training_pb2 as pb

    data = tmp_path / "data"
    serve = serve_on(data)
    with Client(serve.target) as client:
        client.create_dataset("d")
        client.upload_examples("d", examples(0, 60))
        job = client.start_training(pb.TrainingConfig(dataset="d", model="noise", epochs=1000))
        for snapshot in client.watch_training(job.id):
            if snapshot.epoch >= 1:
                break
    serve.process.kill()
    serve.process.wait()
    stop_serve(serve)
    # The orphaned trainer notices its server is gone and stops.
    deadline = time.monotonic() + 60
    while trainer_processes(data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert trainer_processes(data) == []

    serve = serve_on(data)
    with Client(serve.target) as client:
        after = client.get_training_job(job.id)
        assert after.state == pb.JOB_STATE_FAILED
        assert after.reason.startswith("interrupted")
        assert after.epoch >= 1  # the progress it made is on record
    assert stop_serve(serve) == 0
