"""`modelwire import`: model folders made from other projects' formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import fail

__all__ = ["import_app"]

import_app = typer.Typer(
    help="Make model folders from other projects' formats.", no_args_is_help=True
)


@import_app.command("sentence-transformers")
def sentence_transformers(
    folder: Annotated[Path, typer.Argument(help="A sentence-transformers model folder.")],
    name: Annotated[str, typer.Option(help="The new model's name.")],
    into: Annotated[Path, typer.Option(help="The model repository to write it into.")],
    truncate: Annotated[
        bool,
        typer.Option(help="Cut texts longer than the model takes instead of refusing them."),
    ] = False,
) -> None:
    """Export a sentence-transformers model to ONNX as a text-embedding model folder
    INTO/NAME: encoder, tokenizer, pooling and normalisation (needs the train extra)."""
    from modelwire.core.importers import import_sentence_transformers
    from modelwire.errors import ModelwireError

    try:
        written = import_sentence_transformers(folder, into, name, truncate=truncate)
    except ModelwireError as error:
        raise fail(error.message) from None
    except OSError as error:
        raise fail(f"{error.filename or folder}: {error.strerror}") from None
    typer.echo(f"wrote {written}: serve it with `modelwire serve --model-repository {into}`")


@import_app.command("pocketsphinx")
def pocketsphinx(
    into: Annotated[Path, typer.Option(help="The model repository to write it into.")],
    name: Annotated[str, typer.Option(help="The new model's name.")] = "pocketsphinx-en-us",
) -> None:
    """Copy the US-English model the pocketsphinx package ships into a
    speech-recognition model folder INTO/NAME (needs the speech extra)."""
    from modelwire.core.importers import import_pocketsphinx
    from modelwire.errors import ModelwireError

    try:
        written = import_pocketsphinx(into, name)
    except ModelwireError as error:
        raise fail(error.message) from None
    except OSError as error:
        raise fail(f"{error.filename or into}: {error.strerror}") from None
    typer.echo(f"wrote {written}: serve it with `modelwire serve --model-repository {into}`")


@import_app.command("rapidocr")
def rapidocr(
    into: Annotated[Path, typer.Option(help="The model repository to write them into.")],
    name: Annotated[str, typer.Option(help="The OCR pipeline's name.")] = "ocr",
) -> None:
    """Write the PP-OCR models rapidocr-onnxruntime 1.x ships as INTO/NAME-det, NAME-cls
    and NAME-rec, and the OCR pipeline INTO/NAME over them (needs the ocr extra)."""
    from modelwire.core.importers import import_rapidocr
    from modelwire.errors import ModelwireError

    try:
        written = import_rapidocr(into, name)
    except ModelwireError as error:
        raise fail(error.message) from None
    except OSError as error:
        raise fail(f"{error.filename or into}: {error.strerror}") from None
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"serve them with `modelwire serve --model-repository {into}`")
