"""Reading text in pictures end to end: the PP-OCR models imported by `modelwire import
rapidocr`, served by `modelwire serve`, fed pages rendered with Pillow over gRPC
(ReadText, ReadTextStream, Detect), REST (:read-text, :detect), the SDK and the CLI;
rapidocr itself, in the test process, as the reference."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from modelwire.client import Client, TextReading
from modelwire.errors import InvalidInput, ModelwireError, Unavailable
from tests.conftest import ServeProcess
from tests.integration.cli.test_cli import modelwire
from tests.ocr_models import (
    CHINESE,
    ENGLISH,
    character_accuracy,
    font,
    page,
    png,
    rapidocr_lines,
)

#: name → (the lines drawn, how they are drawn, the character accuracy the served
#: answer must reach against what was drawn, in order).
PAGES: dict[str, tuple[list[str], dict[str, Any], float]] = {
    "English, sans": (ENGLISH[:6], {"kind": "sans"}, 0.98),
    "English, serif 24 px": (ENGLISH[6:], {"kind": "serif", "size": 24}, 0.98),
    "English, mono 22 px": (ENGLISH[:6], {"kind": "mono", "size": 22}, 0.98),
    "Chinese": (CHINESE[:6], {"kind": "chinese"}, 0.98),
    "Chinese, 32 px": (CHINESE[6:], {"kind": "chinese", "size": 32}, 0.98),
    "English, turned 8 degrees": (ENGLISH[:4], {"angle": 8}, 0.97),
    "Chinese, turned -10 degrees": (CHINESE[:4], {"kind": "chinese", "angle": -10}, 0.97),
    "English, noisy": (ENGLISH[:4], {"noise": 25}, 0.97),
}


def _recall(truth: list[str], read: list[str]) -> float:
    """The share of drawn lines that some read line matches (90 % of its characters)."""
    found = sum(any(character_accuracy([line], [r]) >= 0.9 for r in read) for line in truth)
    return found / len(truth)


def _read(serve: ServeProcess, data: bytes, model: str = "ocr") -> TextReading:
    with Client(serve.target, timeout=120) as client:
        return client.read_text(data, model=model)


@pytest.mark.parametrize("name", list(PAGES))
def test_pages_read_as_drawn_and_as_rapidocr_reads_them(ocr_serve: ServeProcess, name: str) -> None:
    lines, drawing, floor = PAGES[name]
    data = png(page(lines, **drawing))
    served = [line.text for line in _read(ocr_serve, data).lines]
    assert character_accuracy(rapidocr_lines(data), served) >= 0.98
    assert character_accuracy(lines, served) >= floor, served
    assert _recall(lines, served) == 1.0


def test_upside_down_pages_and_two_columns(ocr_serve: ServeProcess) -> None:
    # Upside down, the classifier turns the lines it is sure of: all the Chinese ones,
    # two thirds of the English ones here (rapidocr reads the same). Two columns are
    # read row by row, as PP-OCR orders boxes.
    cases: list[tuple[list[str], dict[str, Any], float]] = [
        (CHINESE[:4], {"kind": "chinese", "angle": 180}, 1.0),
        (ENGLISH[:6], {"kind": "serif", "angle": 180}, 0.6),
        (ENGLISH[:8], {"columns": 2, "size": 20}, 1.0),
    ]
    for lines, drawing, recall in cases:
        data = png(page(lines, **drawing))
        served = [line.text for line in _read(ocr_serve, data).lines]
        assert character_accuracy(rapidocr_lines(data), served) >= 0.98
        assert _recall(lines, served) >= recall, (drawing, served)
    assert [line.replace(" ", "") for line in served[:2]] == [
        line.replace(" ", "") for line in (ENGLISH[0], ENGLISH[4])
    ]


def test_boxes_lie_on_their_lines(ocr_serve: ServeProcess) -> None:
    size = 28
    lines = ENGLISH[:5]
    reading = _read(ocr_serve, png(page(lines, size=size)))
    assert [line.text.replace(" ", "") for line in reading.lines] == [
        line.replace(" ", "") for line in lines
    ]
    typeface = font("sans", size)
    for row, line in enumerate(reading.lines):
        xs = [x for x, _ in line.box]
        ys = [y for _, y in line.box]
        top = size + row * 2 * size
        assert top - size / 2 <= min(ys), line
        assert max(ys) <= top + 1.5 * size, line
        assert abs(min(xs) - size) <= size / 2
        right = size + typeface.getlength(lines[row])
        assert abs(max(xs) - right) <= size
        assert 0.5 <= line.confidence <= 1.0
    assert reading.model == "ocr"
    assert reading.version == 1


def test_a_picture_without_text_and_thousands_of_glyphs(ocr_serve: ServeProcess) -> None:
    blank = Image.new("RGB", (640, 480), "white")
    assert _read(ocr_serve, png(blank)).lines == ()
    crowded = Image.new("RGB", (1600, 1200), "white")
    draw = ImageDraw.Draw(crowded)
    rng = np.random.default_rng(3)
    tiny = font("mono", 9)
    for _ in range(2000):
        x, y = int(rng.integers(0, 1590)), int(rng.integers(0, 1190))
        draw.text((x, y), chr(int(rng.integers(65, 91))), fill="black", font=tiny)
    reading = _read(ocr_serve, png(crowded), model="ocr-50")
    assert len(reading.lines) <= 50  # [ocr] max_lines bounds the work


def test_a_stream_answers_each_picture_in_order(ocr_serve: ServeProcess) -> None:
    good = png(page(ENGLISH[:2]))
    with Client(ocr_serve.target, timeout=120) as client:
        outcomes = list(client.read_text_stream([good, b"not a picture", good], model="ocr"))
    first, failed, last = outcomes
    assert isinstance(first, TextReading)
    assert isinstance(last, TextReading)
    assert first.text == last.text
    assert isinstance(failed, InvalidInput)


def test_the_text_detector_is_an_object_detection_model(ocr_serve: ServeProcess) -> None:
    data = png(page(ENGLISH[:6]))
    with Client(ocr_serve.target, timeout=120) as client:
        found = client.detect(data, model="ocr-det")
        top = client.detect(data, model="ocr-det", max_detections=2)
        sure = client.detect(data, model="ocr-det", score_threshold=0.8)
        for bad in ({"score_threshold": 1.5}, {"max_detections": 20_000}):
            with pytest.raises(InvalidInput):
                client.detect(data, model="ocr-det", **bad)
    assert len(found.objects) == 6
    assert {o.label for o in found.objects} == {"text"}
    scores = [o.score for o in found.objects]
    assert scores == sorted(scores, reverse=True)
    assert top.objects == found.objects[:2]
    assert all(o.score >= 0.8 for o in sure.objects)
    assert [o for o in found.objects if o.score >= 0.8] == list(sure.objects)
    assert all(len(o.box) == 4 for o in found.objects)


def test_bad_requests_say_what_is_wrong(ocr_serve: ServeProcess) -> None:
    with Client(ocr_serve.target, timeout=60) as client:
        cases: list[tuple[Any, type[ModelwireError], str]] = [
            (lambda: client.read_text(b"garbage", model="ocr"), InvalidInput, "image"),
            (lambda: client.read_text(png(page(["x"])), model="digits"), InvalidInput,
             "not an OCR pipeline"),
            (lambda: client.read_text(png(page(["x"])), model="ocr-broken"), Unavailable,
             "'no-such-model' is not served"),
            (lambda: client.detect(png(page(["x"])), model="ocr"), InvalidInput,
             "not an object detector"),
            (lambda: client.infer("ocr", {"image": np.zeros((1, 1), np.float32)}), InvalidInput,
             "takes no tensors"),
        ]  # fmt: skip
        for call, error, reason in cases:
            with pytest.raises(error) as raised:
                call()
            assert reason in raised.value.message, raised.value.message


def test_rest_and_the_cli(ocr_serve: ServeProcess, tmp_path: Path) -> None:
    picture = tmp_path / "page.png"
    picture.write_bytes(png(page(CHINESE[:2], kind="chinese")))
    rest = f"http://127.0.0.1:{ocr_serve.side_port('rest')}"
    raw = httpx.post(
        f"{rest}/v1/models/ocr:read-text",
        content=picture.read_bytes(),
        headers={"content-type": "image/png"},
        timeout=120,
    )
    assert raw.status_code == 200, raw.text
    assert [line["text"] for line in raw.json()["lines"]] == CHINESE[:2]
    as_json = httpx.post(
        f"{rest}/v1/models/ocr:read-text",
        json={"image_b64": base64.b64encode(picture.read_bytes()).decode()},
        timeout=120,
    )
    assert as_json.json() == raw.json()
    detected = httpx.post(
        f"{rest}/v1/models/ocr-det:detect",
        params={"max_detections": 1},
        content=picture.read_bytes(),
        headers={"content-type": "image/png"},
        timeout=120,
    )
    assert len(detected.json()["objects"]) == 1
    refused = httpx.post(
        f"{rest}/v1/models/ocr:read-text", content=b"nope", headers={"content-type": "image/png"}
    )
    assert refused.status_code == 400
    printed = modelwire("read-text", str(picture), "--target", ocr_serve.target)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [f"{picture}\t{line}" for line in CHINESE[:2]]
    listed = modelwire("read-text", str(picture), "--json", "--target", ocr_serve.target)
    (answer,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [line["text"] for line in answer] == CHINESE[:2]
    assert all(len(line["box"]) == 4 and 0 < line["confidence"] <= 1 for line in answer)


def test_a_pipeline_whose_model_is_missing_is_unavailable(ocr_serve: ServeProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from modelwire.api.v1 import vision_pb2, vision_pb2_grpc

    with grpc.insecure_channel(ocr_serve.target) as channel:
        stub = vision_pb2_grpc.VisionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ReadText(vision_pb2.ReadTextRequest(model="ocr-broken", image=png(page(["x"]))))
        health = health_pb2_grpc.HealthStub(channel)
        broken = health.Check(health_pb2.HealthCheckRequest(service="ocr-broken"))
        working = health.Check(health_pb2.HealthCheckRequest(service="ocr"))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert broken.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert working.status == health_pb2.HealthCheckResponse.SERVING
