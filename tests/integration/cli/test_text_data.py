"""Text datasets through the CLI and the SDK: `modelwire data create --kind text`,
`modelwire data upload` from CSV and JSON Lines, and the texts exported back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from modelwire.client import Client, Example, TextExample
from tests.conftest import ServeProcess
from tests.images import digit_bytes
from tests.integration.cli.test_cli import modelwire
from tests.text_models import TOPICS

CORPUS = Path(__file__).parents[2] / "data" / "text" / "topics.csv"


def test_upload_a_csv_and_a_jsonl_file_to_a_text_dataset(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    target = ("--target", serve_process.target)
    created = modelwire("data", "create", "topics-cli", "--kind", "text", *target)
    assert created.returncode == 0, created.stderr
    uploaded = modelwire("data", "upload", "topics-cli", str(CORPUS), *target)
    assert uploaded.returncode == 0, uploaded.stderr
    assert "topics-cli: 240 accepted, 0 duplicates, 0 rejected" in uploaded.stdout
    lines = tmp_path / "more.jsonl"
    lines.write_text(
        json.dumps({"text": TOPICS[0][0], "label": TOPICS[0][1]})  # a duplicate
        + "\n\n"
        + json.dumps({"text": "Rain again, all week.", "label": "weather"})
        + "\n"
        + json.dumps({"text": "bad\u0000text", "label": "weather"})
        + "\n"
    )
    again = modelwire("data", "upload", "topics-cli", str(lines), *target)
    assert again.returncode == 1  # one was refused
    assert "1 accepted, 1 duplicates, 1 rejected" in again.stdout
    assert "rejected: more.jsonl:4: the text has the control character U+0000" in again.stderr
    shown = modelwire("data", "show", "topics-cli", *target)
    assert shown.stdout.startswith("topics-cli (text): 241 examples")
    assert "  weather\t61" in shown.stdout
    with Client(serve_process.target) as client:
        exported = list(client.export_examples("topics-cli"))
    assert len(exported) == 241
    assert {e.text for e in exported} >= {text for text, _, _ in TOPICS}
    assert all(not e.image for e in exported)


def test_text_files_the_cli_cannot_read_are_named(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    target = ("--target", serve_process.target)
    assert modelwire("data", "create", "texts-bad", "--kind", "text", *target).returncode == 0
    header = tmp_path / "header.csv"
    with header.open("w", newline="") as file:
        csv.writer(file).writerows([["sentence", "topic"], ["a", "b"]])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine", "label": "x"}\n{not json\n')
    wrong = tmp_path / "notes.txt"
    wrong.write_text("hello")
    for path, message in (
        (header, "the header must name a 'text' and a 'label' column"),
        (broken, "broken.jsonl:2: not JSON"),
        (wrong, "texts come in a .csv or a .jsonl file"),
    ):
        result = modelwire("data", "upload", "texts-bad", str(path), *target)
        assert result.returncode == 1
        assert message in result.stderr, result.stderr
    kind = modelwire("data", "create", "texts-worse", "--kind", "audio", *target)
    assert kind.returncode == 1
    assert "kind must be one of image, text" in kind.stderr


def test_images_and_texts_each_go_to_their_own_kind(serve_process: ServeProcess) -> None:
    with Client(serve_process.target) as client:
        client.create_dataset("mixed-texts", kind="text")
        client.create_dataset("mixed-images")
        into_text = client.upload_examples(
            "mixed-texts", [Example("1", digit_bytes(1), "a digit"), TextExample("x", "words")]
        )
        into_images = client.upload_examples(
            "mixed-images", [TextExample("x", "words", "a text"), Example("1", digit_bytes(1))]
        )
        kinds = {d.name: d.kind for d in client.list_datasets()}
    assert (into_text.accepted, [r.client_id for r in into_text.rejected]) == (1, ["a digit"])
    assert "this is a text dataset" in into_text.rejected[0].reason
    assert (into_images.accepted, [r.client_id for r in into_images.rejected]) == (1, ["a text"])
    assert "this is an image dataset" in into_images.rejected[0].reason
    assert kinds["mixed-texts"] == 2  # DATASET_KIND_TEXT
    assert kinds["mixed-images"] == 1
