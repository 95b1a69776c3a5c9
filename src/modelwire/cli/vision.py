"""`modelwire read-text`: the text lines of pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import TargetOption, connected, fail

__all__ = ["read_text"]


def read_text(
    images: Annotated[list[Path], typer.Argument(help="Pictures: JPEG, PNG, BMP, GIF or WebP.")],
    model: Annotated[str, typer.Option(help="The OCR pipeline's name.")] = "ocr",
    target: TargetOption = "localhost:50051",
    version: Annotated[
        int | None, typer.Option(help="Pipeline version (default: the pipeline's).")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON list per picture: each line's text, box, confidence."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 60.0,
) -> None:
    """Print each picture's text lines in reading order (`IMAGE<TAB>line`), or with
    --json one JSON list per picture."""
    with connected(target, timeout=timeout) as client:
        for image in images:
            try:
                data = image.read_bytes()
            except OSError as error:
                raise fail(f"{image}: {error.strerror}") from None
            result = client.read_text(data, model=model, version=version)
            if as_json:
                lines = [
                    {
                        "text": line.text,
                        "box": [list(p) for p in line.box],
                        "confidence": line.confidence,
                    }
                    for line in result.lines
                ]
                typer.echo(json.dumps(lines, ensure_ascii=False))
                continue
            for line in result.lines:
                typer.echo(f"{image}\t{line.text}")
