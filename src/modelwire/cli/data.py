"""`modelwire data`: create, list, describe, delete and upload datasets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import TargetOption, connected, fail
from modelwire.errors import Unavailable

__all__ = ["IMAGE_SUFFIXES", "data_app", "image_folder"]

data_app = typer.Typer(help="Datasets of labelled images kept by the server.", no_args_is_help=True)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def image_folder(root: Path) -> list[tuple[str, Path]]:
    """(label, file) for every image in root/<label>/, like torchvision's ImageFolder."""
    return [
        (folder.name, path)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]


@data_app.command("create")
def create(
    name: str,
    description: Annotated[str, typer.Option(help="What the dataset holds.")] = "",
    target: TargetOption = "localhost:50051",
) -> None:
    """Create an empty dataset."""
    with connected(target) as client:
        client.create_dataset(name, description)
    typer.echo(f"created {name}")


@data_app.command("ls")
def list_datasets(target: TargetOption = "localhost:50051") -> None:
    """List the datasets: name, examples, labels, bytes."""
    with connected(target) as client:
        datasets = client.list_datasets()
    for dataset in datasets:
        typer.echo(
            f"{dataset.name}\t{dataset.examples} examples\t{len(dataset.label_counts)} labels\t"
            f"{dataset.total_bytes} bytes"
        )


@data_app.command("show")
def show(name: str, target: TargetOption = "localhost:50051") -> None:
    """Describe a dataset: examples per label, size, times."""
    with connected(target) as client:
        dataset = client.get_dataset(name)
    typer.echo(f"{dataset.name}: {dataset.examples} examples, {dataset.total_bytes} bytes")
    if dataset.description:
        typer.echo(dataset.description)
    typer.echo(f"created {dataset.create_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC")
    typer.echo(f"updated {dataset.update_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC")
    for label, count in sorted(dataset.label_counts.items()):
        typer.echo(f"  {label}\t{count}")


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
        Path, typer.Argument(help="Folder of DIR/<label>/<image files>.", file_okay=False)
    ],
    target: TargetOption = "localhost:50051",
) -> None:
    """Upload DIR/<label>/*.{jpg,png,bmp,gif,webp} into a dataset, with a progress bar;
    exits 1 if the server refused any image (each is listed with its reason)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from modelwire.client import Example

    if not folder.is_dir():
        raise fail(f"{folder} is not a folder")
    files = image_folder(folder)
    if not files:
        raise fail(f"{folder} has no <label>/<image> files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(f"uploading to {dataset}", total=len(files))

        def examples() -> Iterator[Example]:
            progress.reset(task, total=len(files))
            for label, path in files:
                yield Example(label, path, str(path.relative_to(folder)))
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
