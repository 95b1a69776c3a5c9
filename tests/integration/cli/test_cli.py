"""The real `modelwire` command in a subprocess against `modelwire serve` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import processes
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.images import digit_bytes
from tests.integration.client.test_client import _closed_port


def modelwire(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return processes.run(
        [sys.executable, "-m", "modelwire", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_classify_prints_label_and_score_per_file(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    files = []
    for label in (3, 7):
        path = tmp_path / f"digit{label}.jpg"
        path.write_bytes(digit_bytes(label, "JPEG", dark_on_light=True))
        files.append(str(path))
    result = modelwire("classify", *files, "--target", serve_process.target, "--timeout", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, label in zip(lines, (3, 7), strict=True):
        printed, predicted, score = line.split("\t")
        assert printed.endswith(f"digit{label}.jpg")
        assert predicted == str(label)
        assert 0 < float(score) <= 1


def test_classify_exits_nonzero_when_the_server_refuses_the_image(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    good = tmp_path / "one.png"
    good.write_bytes(digit_bytes(1))
    result = modelwire("classify", str(bad), str(good), "--target", serve_process.target)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: data is not a JPEG, PNG, BMP, GIF or WebP image"
    ]
    assert result.stdout.split("\t")[1] == "1"


def test_classify_exits_nonzero_with_one_line_when_unreachable(tmp_path: Path) -> None:
    image = tmp_path / "two.png"
    image.write_bytes(digit_bytes(2))
    target = f"127.0.0.1:{_closed_port()}"
    result = modelwire("classify", str(image), "--target", target, "--timeout", "5")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot reach a modelwire server at {target}: is it running?"
    )
    assert result.stdout == ""


def test_classify_missing_file(serve_process: ServeProcess, tmp_path: Path) -> None:
    result = modelwire("classify", str(tmp_path / "nope.png"), "--target", serve_process.target)
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_serve_listens_on_loopback_only_by_default() -> None:
    serve = start_serve("--port", "0")
    try:
        (line,) = [line for line in serve.log if "serving model(s)" in line]
    finally:
        assert stop_serve(serve) == 0
    addresses = line.split(" on ", 1)[1].strip().split(", ")
    assert addresses[0] == f"127.0.0.1:{serve.port}"
    assert addresses[1:] in ([], [f"[::1]:{serve.port}"])  # ::1 where the machine has IPv6


def test_serve_refuses_bad_settings() -> None:
    result = modelwire("serve", "--port", "70000")
    assert result.returncode == 1
    assert result.stderr.startswith("error: bad settings")
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_missing_repository(tmp_path: Path) -> None:
    result = modelwire("serve", "--port", "0", "--model-repository", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("is not a folder")
    assert "Traceback" not in result.stderr


def test_models_commands(serve_process: ServeProcess) -> None:
    listed = modelwire("models", "list", "--target", serve_process.target)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("digits (default)\tREADY\tv1 READY")
    described = modelwire("models", "get", "digits", "--target", serve_process.target)
    assert '"labels": [' in described.stdout
    missing = modelwire("models", "get", "nope", "--target", serve_process.target)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: model 'nope' is not served here; models: digits"


def test_serve_reports_a_port_in_use(serve_process: ServeProcess) -> None:
    result = modelwire("serve", "--host", "127.0.0.1", "--port", str(serve_process.port))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_protos_prints_the_folder_with_the_document_proto() -> None:
    result = modelwire("protos")
    assert result.returncode == 0
    proto = Path(result.stdout.strip()) / "modelwire/api/compat/image_classifier.proto"
    assert "service ImageClassifier" in proto.read_text()


def test_serve_runs_on_uvloop_by_default(tmp_path: Path) -> None:
    serve = start_serve("--port", "0")
    try:
        picture = tmp_path / "digit.png"
        picture.write_bytes(digit_bytes(4))
        result = modelwire("classify", str(picture), "--target", serve.target)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\t")[1] == "4"
    finally:
        assert stop_serve(serve) == 0
    assert any("event loop: uvloop" in line for line in serve.log), "".join(serve.log)
    assert any("Classify OK" in line for line in serve.log)  # written before the exit


def test_serve_has_a_flag_for_every_setting() -> None:
    from modelwire.settings import Settings

    shown = processes.run(
        [sys.executable, "-m", "modelwire", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},  # wide enough that no flag is cut
    )
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    renamed = {
        "hosts": "--host",
        "model_repositories": "--model-repository",
        "default_models": "--default-models",
        "grace_period_s": "--grace-period",
        "poll_repository_s": "--poll-repository",
        "tokens_file": "--tokens",
        "keepalive_min_ping_interval_s": "--keepalive-min-ping-interval",
        "max_connection_age_s": "--max-connection-age",
    }
    for name in Settings.model_fields:
        flag = renamed.get(name, "--" + name.replace("_", "-"))
        assert flag in text, f"serve has no {flag} for the setting {name}"
