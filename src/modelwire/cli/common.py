"""What the command modules share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from modelwire.client import Client

__all__ = ["ClientOptions", "TargetOption", "connect", "connected", "fail"]


@dataclass
class ClientOptions:
    """How client commands reach the server (the root command's --ca/--cert/--key/--token)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None


#: Set once per process by the root command.
client_options = ClientOptions()


def connect(target: str, timeout: float | None = 30.0) -> Client:
    from modelwire.client import Client

    options = client_options
    return Client(
        target,
        timeout=timeout,
        ca=options.ca,
        cert=options.cert,
        key=options.key,
        token=options.token,
    )


TargetOption = Annotated[str, typer.Option(help="Server address HOST:PORT.")]


def fail(message: str) -> typer.Exit:
    """Print `error: message` to stderr; raise the result to exit 1."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


@contextlib.contextmanager
def connected(target: str, timeout: float | None = 30.0) -> Iterator[Client]:
    """A client whose errors end the command with `error: <message>` and exit 1."""
    from modelwire.errors import ModelwireError

    with connect(target, timeout) as client:
        try:
            yield client
        except ModelwireError as error:
            raise fail(error.message) from None
