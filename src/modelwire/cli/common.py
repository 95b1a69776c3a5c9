"""What the command modules share."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["TargetOption", "fail"]

TargetOption = Annotated[str, typer.Option(help="Server address HOST:PORT.")]


def fail(message: str) -> typer.Exit:
    """Print `error: message` to stderr; raise the result to exit 1."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)
