"""The `modelwire` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from modelwire.errors import ModelwireError

app = typer.Typer(
    help="modelwire: serve, train and store image models over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[
        list[str] | None,
        typer.Option(help="Address to listen on (repeatable). Default: 127.0.0.1 and ::1."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port (default 50051; 0: any).")] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads for decoding and inference (default: CPUs).")
    ] = None,
    grace_period: Annotated[
        float | None, typer.Option(help="Seconds calls in flight get on shutdown (default 10).")
    ] = None,
    max_message_bytes: Annotated[
        int | None, typer.Option(help="Largest request message (default 16 MiB).")
    ] = None,
    max_image_pixels: Annotated[
        int | None, typer.Option(help="Largest image, width x height (default 40,000,000).")
    ] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option(help="Model folder to serve (repeatable). Default: the built-in digits."),
    ] = None,
    reflection: Annotated[
        bool | None, typer.Option("--reflection/--no-reflection", help="Serve reflection.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file with settings (flags and env win).")
    ] = None,
) -> None:
    """Serve the models over gRPC until SIGTERM or Ctrl-C."""
    from modelwire.server.app import serve as run_server
    from modelwire.settings import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings(
            config,
            hosts=host,
            port=port,
            threads=threads,
            grace_period_s=grace_period,
            max_message_bytes=max_message_bytes,
            max_image_pixels=max_image_pixels,
            model_dirs=model,
            reflection=reflection,
        )
    except (ValidationError, FileNotFoundError) as exc:
        raise _fail(f"bad settings: {exc}") from None
    try:
        run_server(settings)
    except (ModelwireError, OSError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    target: Annotated[str, typer.Option(help="Server address HOST:PORT.")] = "localhost:50051",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 30.0,
) -> None:
    """Print the label and score of each image, one line each."""
    from modelwire.client import Client
    from modelwire.errors import Unavailable

    failed = False
    with Client(target, timeout=timeout) as client:
        for path in files:
            try:
                result = client.classify(path.read_bytes())
            except OSError as exc:
                typer.echo(f"error: {path}: cannot read: {exc.strerror}", err=True)
                failed = True
                continue
            except Unavailable as exc:
                raise _fail(exc.message) from None
            except ModelwireError as exc:
                typer.echo(f"error: {path}: {exc.message}", err=True)
                failed = True
                continue
            typer.echo(f"{path}\t{result.label}\t{result.score:.4f}")
    if failed:
        raise typer.Exit(code=1)


@app.command()
def protos() -> None:
    """Print the folder holding modelwire's .proto files (for generating stubs)."""
    from modelwire.protos import proto_dir

    typer.echo(str(proto_dir()))
