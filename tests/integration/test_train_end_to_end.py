"""The source document's first use of gRPC in an AI system, end to end with the real
command: upload training data, train a new model version on the server, watch it, and
classify with it through the document's own ImageClassifier service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_digits

from modelwire.api.compat import image_classifier_pb2, image_classifier_pb2_grpc
from modelwire.api.v1 import inference_pb2, inference_pb2_grpc
from modelwire.core.repository import DEFAULT_MODEL_DIR
from tests import processes
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.images import digit_picture, encode, heldout_digits
from tests.integration.cli.test_cli import modelwire
from tests.requirements import need_module

need_module("torch", 'PyTorch (pip install -e ".[train]")')


@pytest.fixture(scope="module")
def serve() -> Iterator[ServeProcess]:
    serve = start_serve("--host", "127.0.0.1", "--port", "0")
    yield serve
    assert stop_serve(serve) == 0


def training_folder(root: Path) -> Path:
    """scikit-learn's digits, minus the held-out ones, as root/<label>/<n>.png."""
    split = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())["split"]
    digits = load_digits()
    order = np.random.default_rng(split["seed"]).permutation(len(digits.target))
    for index in order[split["test_size"] :]:
        folder = root / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(encode(digit_picture(digits.images[index])))
    return root


def test_upload_train_watch_and_classify(serve: ServeProcess, tmp_path: Path) -> None:
    target = ("--target", serve.target)
    folder = training_folder(tmp_path / "digits")
    files = len(list(folder.rglob("*.png")))
    assert modelwire("data", "create", "digits-data", *target).returncode == 0
    uploaded = modelwire("data", "upload", "digits-data", str(folder), *target, timeout=300)
    assert uploaded.returncode == 0, uploaded.stderr
    assert f"{files} accepted, 0 duplicates, 0 rejected" in uploaded.stdout
    shown = modelwire("data", "show", "digits-data", *target)
    assert f"{files} examples" in shown.stdout

    trained = modelwire(
        "train", "digits-data", "--model", "digits", "--epochs", "15", "--promote", "always",
        "--watch", *target, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "SUCCEEDED: digits version 2" in trained.stdout
    assert "promoted to default" in trained.stdout

    # The document's ImageClassifier answers with the default model: the new version.
    images, labels = heldout_digits()
    with grpc.insecure_channel(serve.target) as channel:
        classify = image_classifier_pb2_grpc.ImageClassifierStub(channel)
        answers = [
            classify.ClassifyImage(image_classifier_pb2.Image(data=encode(digit_picture(p)))).label
            for p in images
        ]
        version = inference_pb2_grpc.InferenceServiceStub(channel).Classify(
            inference_pb2.ClassifyRequest(image=encode(digit_picture(images[0])))
        )
    accuracy = float(np.mean([a == str(label) for a, label in zip(answers, labels, strict=True)]))
    assert accuracy >= 0.95
    assert version.version == 2

    jobs = modelwire("jobs", *target)
    assert "SUCCEEDED\tdigits v2\tdigits-data" in jobs.stdout
    listed = modelwire("models", "list", *target)
    assert "v1 READY" in listed.stdout
    assert "v2 READY" in listed.stdout  # the built-in version still serves, by number


def test_upload_reports_refused_files(serve: ServeProcess, tmp_path: Path) -> None:
    target = ("--target", serve.target)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "good.png").write_bytes(encode(digit_picture(heldout_digits()[0][0])))
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG not really")
    assert modelwire("data", "create", "mixed", *target).returncode == 0
    result = modelwire("data", "upload", "mixed", str(tmp_path), *target)
    assert result.returncode == 1
    assert "1 accepted, 0 duplicates, 1 rejected" in result.stdout
    assert "rejected: cats/broken.png:" in result.stderr
    missing = modelwire("data", "upload", "nope", str(tmp_path), *target)
    assert missing.returncode == 1
    assert "dataset 'nope' does not exist" in missing.stderr
    refused = modelwire("train", "mixed", "--model", "cats", *target)
    assert refused.returncode == 1
    assert "at least two" in refused.stderr


def test_listing_showing_cancelling_and_removing(serve: ServeProcess, tmp_path: Path) -> None:
    target = ("--target", serve.target)
    folder = training_folder(tmp_path / "digits")
    assert modelwire("data", "create", "short-lived", *target).returncode == 0
    assert (
        modelwire("data", "upload", "short-lived", str(folder), *target, timeout=300).returncode
        == 0
    )
    listed = modelwire("data", "ls", *target)
    assert any(
        line.startswith("short-lived\t") and "10 labels" in line
        for line in listed.stdout.splitlines()
    )
    started = modelwire("train", "short-lived", "--model", "cancelled", "--epochs", "1000", *target)
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.split()[1]
    cancelled = modelwire("jobs", "cancel", job_id, *target)
    assert cancelled.returncode == 0, cancelled.stderr
    watched = modelwire("jobs", "watch", job_id, *target, timeout=120)
    assert watched.returncode == 1  # it did not succeed, and says why
    assert "CANCELLED" in watched.stderr
    shown = json.loads(modelwire("jobs", "show", job_id, *target).stdout)
    assert shown["state"] == "JOB_STATE_CANCELLED"
    assert shown["config"]["model"] == "cancelled"
    assert modelwire("data", "rm", "short-lived", *target).returncode == 0
    assert "short-lived" not in modelwire("data", "ls", *target).stdout
    assert modelwire("jobs", "cancel", "nope", *target).returncode == 1


def trainer_processes(serve: ServeProcess) -> list[int]:
    """The server's processes running the trainer module (a launcher or one of its
    workers): descendants of `serve` only, not another test run's."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and b"modelwire.core.training.trainer" in (entry / "cmdline").read_bytes()
                and _descends_from(int(entry.name), serve.process.pid)
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return False


def test_two_workers_train_to_the_same_bar(serve: ServeProcess, tmp_path: Path) -> None:
    """A job with workers 2 runs under torchrun with DistributedDataParallel (gloo) and
    reaches the bar one worker reaches; its progress events arrive as usual."""
    target = ("--target", serve.target)
    folder = training_folder(tmp_path / "digits")
    assert modelwire("data", "create", "ddp-data", *target).returncode == 0
    uploaded = modelwire("data", "upload", "ddp-data", str(folder), *target, timeout=300)
    assert uploaded.returncode == 0, uploaded.stderr
    trained = modelwire(
        "train", "ddp-data", "--model", "ddp-digits", "--epochs", "15", "--workers", "2",
        "--watch", *target, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "SUCCEEDED: ddp-digits version 1" in trained.stdout
    job = json.loads(modelwire("jobs", "show", trained.stdout.split()[1], *target).stdout)
    assert job["config"]["workers"] == 2
    assert [e["epoch"] for e in job["history"]] == list(range(1, 16))  # progress per epoch

    images, labels = heldout_digits()
    with grpc.insecure_channel(serve.target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        answers = [
            stub.Classify(
                inference_pb2.ClassifyRequest(model="ddp-digits", image=encode(digit_picture(p)))
            )
            .classes[0]
            .label
            for p in images
        ]
    accuracy = float(np.mean([a == str(label) for a, label in zip(answers, labels, strict=True)]))
    assert accuracy >= 0.95
    assert not trainer_processes(serve)


def test_cancelling_a_two_worker_job_stops_every_worker(
    serve: ServeProcess, tmp_path: Path
) -> None:
    target = ("--target", serve.target)
    folder = training_folder(tmp_path / "digits")
    assert modelwire("data", "create", "ddp-cancel", *target).returncode == 0
    assert modelwire("data", "upload", "ddp-cancel", str(folder), *target).returncode == 0
    started = modelwire(
        "train", "ddp-cancel", "--model", "ddp-cancelled", "--epochs", "1000", "--workers", "2",
        *target,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.split()[1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the workers are training
        shown = json.loads(modelwire("jobs", "show", job_id, *target).stdout)
        if shown.get("epoch", 0) >= 1:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the job did not start: {shown}")
    assert len(trainer_processes(serve)) == 3  # torchrun and its two workers
    assert modelwire("jobs", "cancel", job_id, *target).returncode == 0
    watched = modelwire("jobs", "watch", job_id, *target, timeout=120)
    assert "CANCELLED" in watched.stderr
    deadline = time.monotonic() + 30
    while trainer_processes(serve) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not trainer_processes(serve)


def test_upload_is_sent_again_while_the_server_is_away(tmp_path: Path) -> None:
    """`modelwire data upload` tries again (same idempotency key) when the server cannot
    be reached, and finishes once it is back."""
    data_dir = tmp_path / "data"
    first = start_serve("--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir))
    port = first.port
    assert modelwire("data", "create", "later", "--target", first.target).returncode == 0
    assert stop_serve(first) == 0
    folder = training_folder(tmp_path / "digits")
    files = len(list(folder.rglob("*.png")))
    upload = processes.popen(
        [sys.executable, "-m", "modelwire", "data", "upload", "later", str(folder),
         "--target", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert upload.stdout is not None
    output = []
    for line in upload.stdout:
        output.append(line)
        if "Sending again (2/3)" in line:
            break
    else:
        raise AssertionError("".join(output))
    back = start_serve("--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir))
    try:
        rest, _ = upload.communicate(timeout=120)
        assert upload.returncode == 0, "".join(output) + rest
        assert f"later: {files} accepted, 0 duplicates, 0 rejected" in rest
    finally:
        assert stop_serve(back) == 0
