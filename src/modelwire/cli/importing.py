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
