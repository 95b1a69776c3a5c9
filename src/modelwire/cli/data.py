"""`modelwire data`: create, list, describe, delete and upload datasets (of images, or of
texts from CSV or JSON Lines files)."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import TargetOption, connected, fail
from modelwire.errors import Unavailable

__all__ = ["IMAGE_SUFFIXES", "data_app", "image_folder", "text_file"]

data_app = typer.Typer(
    help="Datasets of labelled images or texts kept by the server.", no_args_is_help=True
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def image_folder(root: Path) -> list[tuple[str, Path]]:
    """(label, file) for every image in root/<label>/, like torchvision's ImageFolder."""
    return [
        (folder.name, path)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]


def text_file(path: Path) -> list[tuple[str, str, str]]:
    """(label, text, where) of every example of a .csv file (a header naming `text` and
    `label` columns) or a .jsonl file (one {"text": ..., "label": ...} object a line).
    Raises ValueError saying what is wrong where."""
    rows: list[tuple[str, str, str]] = []
    content = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(content))
        if not {"text", "label"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: the header must name a 'text' and a 'label' column")
        for number, row in enumerate(reader, start=2):
            rows.append((row["label"] or "", row["text"] or "", f"{path.name}:{number}"))
        return rows
    if path.suffix.lower() != ".jsonl":
        raise ValueError(f"{path}: texts come in a .csv or a .jsonl file")
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("text", "label")
        ):
            raise ValueError(f'{path}:{number}: write {{"text": "...", "label": "..."}}')
        rows.append((item["label"], item["text"], f"{path.name}:{number}"))
    return rows


@data_app.command("create")
def create(
    name: str,
    description: Annotated[str, typer.Option(help="What the dataset holds.")] = "",
    kind: Annotated[str, typer.Option(help="What it holds: image or text.")] = "image",
    target: TargetOption = "localhost:50051",
) -> None:
    """Create an empty dataset of images or of texts."""
    with connected(target) as client:
        client.create_dataset(name, description, kind=kind)
    typer.echo(f"created {name} ({kind})")


@data_app.command("ls")
def list_datasets(target: TargetOption = "localhost:50051") -> None:
    """List the datasets: name, examples, labels, bytes."""
    with connected(target) as client:
        datasets = client.list_datasets()
    for dataset in datasets:
        typer.echo(
            f"{dataset.name}\t{_kind(dataset.kind)}\t{dataset.examples} examples\t"
            f"{len(dataset.label_counts)} labels\t{dataset.total_bytes} bytes"
        )


@data_app.command("show")
def show(name: str, target: TargetOption = "localhost:50051") -> None:
    """Describe a dataset: examples per label, size, times."""
    with connected(target) as client:
        dataset = client.get_dataset(name)
    typer.echo(
        f"{dataset.name} ({_kind(dataset.kind)}): {dataset.examples} examples, "
        f"{dataset.total_bytes} bytes"
    )
    if dataset.description:
        typer.echo(dataset.description)
    typer.echo(f"created {dataset.create_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC")
    typer.echo(f"updated {dataset.update_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC")
    for label, count in sorted(dataset.label_counts.items()):
        typer.echo(f"  {label}\t{count}")


def _kind(number: int) -> str:
    from modelwire.client._common import DATASET_KINDS

    return next((name for name, value in DATASET_KINDS.items() if value == number), "image")


@data_app.command("rm")
def remove(name: str, target: TargetOption = "localhost:50051") -> None:
    """Delete a dataset and its examples."""
    with connected(target) as client:
        client.delete_dataset(name)
    typer.echo(f"deleted {name}")


#: Tries of an upload whose connection breaks (UNAVAILABLE), with the same key.
UPLOAD_ATTEMPTS = 3


@data_app.command("upload")
def upload(
    dataset: str,
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder of DIR/<label>/<image files>, or a .csv or .jsonl file of texts."
        ),
    ],
    target: TargetOption = "localhost:50051",
) -> None:
    """Upload DIR/<label>/*.{jpg,png,bmp,gif,webp} into an image dataset, or the rows of
    FILE.csv (columns text, label) or FILE.jsonl ({"text", "label"} a line) into a text
    dataset, with a progress bar; exits 1 if the server refused any example (each is
    listed with its reason)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from modelwire.client import Example, TextExample

    items: list[Example | TextExample]
    if folder.is_file():
        try:
            items = [TextExample(label, text, where) for label, text, where in text_file(folder)]
        except (ValueError, UnicodeDecodeError) as error:
            raise fail(str(error)) from None
        if not items:
            raise fail(f"{folder} has no examples")
    elif folder.is_dir():
        files = image_folder(folder)
        if not files:
            raise fail(
                f"{folder} has no <label>/<image> files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        items = [Example(label, path, str(path.relative_to(folder))) for label, path in files]
    else:
        raise fail(f"{folder} is neither a folder of images nor a file of texts")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(f"uploading to {dataset}", total=len(items))

        def examples() -> Iterator[Example | TextExample]:
            progress.reset(task, total=len(items))
            for item in items:
                yield item
                progress.advance(task)

        # One key for every attempt: a resent upload stores nothing twice and answers
        # as one upload would have.
        key = uuid.uuid4().hex
        with connected(target) as client:
            for attempt in range(1, UPLOAD_ATTEMPTS + 1):
                try:
                    summary = client.upload_examples(dataset, examples(), idempotency_key=key)
                    break
                except Unavailable as error:
                    if attempt == UPLOAD_ATTEMPTS:
                        raise
                    progress.console.print(
                        f"{error.message} Sending again ({attempt + 1}/{UPLOAD_ATTEMPTS}).",
                        soft_wrap=True,
                    )
                    time.sleep(2 * attempt)
    typer.echo(
        f"{dataset}: {summary.accepted} accepted, {summary.duplicates} duplicates, "
        f"{len(summary.rejected)} rejected"
    )
    for rejected in summary.rejected:
        typer.echo(f"rejected: {rejected.client_id}: {rejected.reason}", err=True)
    if summary.rejected:
        raise typer.Exit(code=1)
