"""`modelwire tokens`: bearer tokens for a server's --tokens file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import fail
from modelwire.errors import InvalidInput

__all__ = ["tokens_app"]

tokens_app = typer.Typer(help="Bearer tokens and their roles.", no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", envvar="MODELWIRE_TOKENS_FILE", help="The tokens file.")
]


@tokens_app.command("add")
def add(
    name: str,
    roles: Annotated[str, typer.Option(help="Comma-separated: infer, admin, train.")],
    file: FileOption = Path("tokens.toml"),
) -> None:
    """Make a new token with ROLES; print it (the only time it is shown: the file keeps
    a salted hash)."""
    from modelwire.core.tokens import add_token

    try:
        token = add_token(file, name, [r.strip() for r in roles.split(",") if r.strip()])
    except InvalidInput as error:
        raise fail(error.message) from None
    typer.echo(token)


@tokens_app.command("ls")
def list_tokens(file: FileOption = Path("tokens.toml")) -> None:
    """List the tokens' names and roles (never the tokens)."""
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError) as error:
        raise fail(f"cannot read {file}: {error}") from None
    for item in raw.get("token", []):
        typer.echo(f"{item.get('name')}\t{','.join(item.get('roles', []))}")
