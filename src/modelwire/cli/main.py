"""The `modelwire` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelwire.cli.common import TargetOption, client_options, connect, connected, fail
from modelwire.cli.serve import serve
from modelwire.errors import ModelwireError

app = typer.Typer(
    help="modelwire: serve, train and store image models over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ca: Annotated[
        Path | None,
        typer.Option(envvar="MODELWIRE_CA", help="Client commands: trust this PEM CA (TLS)."),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(envvar="MODELWIRE_CERT", help="Client commands: PEM client certificate."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(envvar="MODELWIRE_KEY", help="Client commands: its PEM private key."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="MODELWIRE_TOKEN", help="Client commands: the bearer token to send."),
    ] = None,
) -> None:
    """modelwire: serve, train and store image models over gRPC."""
    client_options.ca, client_options.cert = ca, cert
    client_options.key, client_options.token = key, token


app.command()(serve)


@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    target: Annotated[str, typer.Option(help="Server address HOST:PORT.")] = "localhost:50051",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 30.0,
    model: Annotated[str | None, typer.Option(help="Model name (default: the server's).")] = None,
    version: Annotated[
        int | None, typer.Option(help="Model version (default: the model's).")
    ] = None,
    top_k: Annotated[int, typer.Option(help="Classes to print per image.")] = 1,
) -> None:
    """Print the label and score of each image, one line each (top-k: label:score pairs)."""
    from modelwire.errors import Unavailable

    failed = False
    with connect(target, timeout=timeout) as client:
        for path in files:
            try:
                result = client.classify(
                    path.read_bytes(), model=model, version=version, top_k=top_k
                )
            except OSError as exc:
                typer.echo(f"error: {path}: cannot read: {exc.strerror}", err=True)
                failed = True
                continue
            except Unavailable as exc:
                raise fail(exc.message) from None
            except ModelwireError as exc:
                typer.echo(f"error: {path}: {exc.message}", err=True)
                failed = True
                continue
            ranked = "\t".join(f"{c.label}\t{c.score:.4f}" for c in result.classes)
            typer.echo(f"{path}\t{ranked}")
    if failed:
        raise typer.Exit(code=1)


@app.command()
def embed(
    texts: Annotated[list[str], typer.Argument(help="Texts to embed.")],
    model: Annotated[str, typer.Option(help="The text-embedding model's name.")],
    target: TargetOption = "localhost:50051",
    version: Annotated[
        int | None, typer.Option(help="Model version (default: the model's).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    """Print one JSON line per text: the text, its tokens and its vector."""
    import json

    with connected(target, timeout=timeout) as client:
        result = client.embed(texts, model=model, version=version)
    for text, tokens, vector in zip(texts, result.tokens, result.vectors.tolist(), strict=True):
        typer.echo(json.dumps({"text": text, "tokens": tokens, "embedding": vector}))


@app.command("classify-text")
def classify_text(
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    model: Annotated[str, typer.Option(help="The text classifier's name.")],
    target: TargetOption = "localhost:50051",
    version: Annotated[
        int | None, typer.Option(help="Model version (default: the model's).")
    ] = None,
    top_k: Annotated[int, typer.Option(help="Classes to print per text.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    """Print each text's label and score, one line each (top-k: label, score pairs)."""
    with connected(target, timeout=timeout) as client:
        results = client.classify_text(texts, model=model, version=version, top_k=top_k)
    for text, result in zip(texts, results, strict=True):
        ranked = "\t".join(f"{c.label}\t{c.score:.4f}" for c in result.classes)
        typer.echo(f"{text}\t{ranked}")


models_app = typer.Typer(
    help="List, describe, load, unload and reload models.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


def _models_call(target: str, action: str, name: str | None = None) -> None:
    from google.protobuf import json_format

    with connect(target) as client:
        try:
            if action == "list":
                for model in client.list_models():
                    versions = ", ".join(
                        f"v{v.version} {version_state_name(v.state)}" for v in model.versions
                    )
                    default = " (default)" if model.is_default else ""
                    reason = f" - {model.reason}" if model.reason else ""
                    typer.echo(
                        f"{model.name}{default}\t{model_state_name(model.state)}\t{versions}{reason}"
                    )
                return
            assert name is not None
            method = {
                "get": client.get_model,
                "load": client.load_model,
                "unload": client.unload_model,
                "reload": client.reload_model,
            }[action]
            message = method(name)
        except ModelwireError as exc:
            raise fail(exc.message) from None
    typer.echo(json_format.MessageToJson(message))


def model_state_name(value: int) -> str:
    """A model's state as `modelwire models list` prints it: READY, LOADING, ..."""
    from modelwire.api.v1 import models_pb2

    return _state_name(models_pb2.ModelState, "MODEL_STATE_", value)


def version_state_name(value: int) -> str:
    """A version's state as `modelwire models list` prints it: READY, UNLOADING, ..."""
    from modelwire.api.v1 import models_pb2

    return _state_name(models_pb2.VersionState, "VERSION_STATE_", value)


def _state_name(enum: Any, prefix: str, value: int) -> str:
    # A number this client's proto does not know (a newer server) prints as the number.
    names = {number: name for name, number in enum.items()}
    return names[value].removeprefix(prefix) if value in names else str(value)


@models_app.command("list")
def models_list(target: TargetOption = "localhost:50051") -> None:
    """One line per model: name, state, versions."""
    _models_call(target, "list")


@models_app.command("get")
def models_get(name: str, target: TargetOption = "localhost:50051") -> None:
    """Describe a model (JSON)."""
    _models_call(target, "get", name)


@models_app.command("load")
def models_load(name: str, target: TargetOption = "localhost:50051") -> None:
    """Load a model from the server's repository."""
    _models_call(target, "load", name)


@models_app.command("unload")
def models_unload(name: str, target: TargetOption = "localhost:50051") -> None:
    """Unload a model once its requests in flight finish."""
    _models_call(target, "unload", name)


@models_app.command("reload")
def models_reload(name: str, target: TargetOption = "localhost:50051") -> None:
    """Re-read a model from disk without failing requests in flight."""
    _models_call(target, "reload", name)


@app.command()
def bench(
    target: Annotated[
        str, typer.Argument(help="Server address HOST:PORT (the REST port for REST modes).")
    ],
    payload: Annotated[
        Path,
        typer.Argument(
            help="Image file sent in every request; for the oip and oip-rest modes, a .npy "
            "file with the preprocessed FP32 tensor [N, ...]."
        ),
    ],
    model: Annotated[
        str, typer.Option(help="Model name (default: the server's; REST modes need it).")
    ] = "",
    mode: Annotated[
        str,
        typer.Option(
            help="unary (Classify), stream (ClassifyStream), oip (ModelInfer, FP32 tensor), "
            "rest (raw image body), rest-json (base64 JSON), oip-rest (JSON tensor)."
        ),
    ] = "unary",
    concurrency: Annotated[
        str, typer.Option(help="Requests kept in flight; a list (1,8,32) sweeps them.")
    ] = "8",
    duration: Annotated[float, typer.Option(help="Seconds measured, after the warm-up.")] = 5.0,
    count: Annotated[
        int | None, typer.Option(help="Instead of a duration: stop after this many answers.")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Send at this many requests/s (open loop) instead of back to back."),
    ] = None,
    warmup: Annotated[float, typer.Option(help="Seconds of warm-up, not counted.")] = 1.0,
    streams: Annotated[int, typer.Option(help="Streams in stream mode.")] = 4,
    connections: Annotated[
        int,
        typer.Option(help="gRPC connections the calls are spread over (serve --workers)."),
    ] = 1,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON (a list for a sweep).")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of throughput and latency per concurrency.")
    ] = None,
) -> None:
    """Load a server with one kind of request; print throughput, latency percentiles and
    errors by status code (a table, or JSON)."""
    import asyncio
    import json

    import numpy as np

    from modelwire.bench.loadgen import MODES, TENSOR_MODES, LoadResult, run_load

    if mode not in MODES:
        raise fail(f"--mode is one of {', '.join(MODES)}")
    try:
        levels = [int(level) for level in concurrency.split(",")]
    except ValueError:
        raise fail("--concurrency is a number or a comma-separated list of numbers") from None
    if not levels or min(levels) < 1:
        raise fail("--concurrency must be at least 1")
    data: bytes | np.ndarray
    if mode in TENSOR_MODES:
        if payload.suffix != ".npy":
            raise fail(f"--mode {mode} sends a tensor: give a .npy file")
        data = np.load(payload).astype(np.float32)
    else:
        data = payload.read_bytes()

    async def sweep() -> list[LoadResult]:
        return [
            await run_load(
                target,
                data,
                model=model,
                mode=mode,  # type: ignore[arg-type]
                concurrency=level,
                duration_s=duration,
                warmup_s=warmup,
                streams=streams,
                count=count,
                rate=rate,
                connections=connections,
            )
            for level in levels
        ]

    try:
        results = asyncio.run(sweep())
    except (ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    summaries = [result.summary() for result in results]
    if plot is not None:
        from modelwire.bench.plot import plot_sweep

        plot_sweep(results, plot, f"modelwire bench: {mode} on {target}")
    if json_output:
        typer.echo(json.dumps(summaries[0] if len(summaries) == 1 else summaries))
        return
    _print_table(summaries)


def _print_table(summaries: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("mode", "in flight", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors")
    for row in summaries:
        errors = row["errors"]
        assert isinstance(errors, dict)
        table.add_row(
            str(row["mode"]),
            str(row["concurrency"]),
            f"{row['throughput_per_s']}",
            f"{row['p50_ms']}",
            f"{row['p90_ms']}",
            f"{row['p99_ms']}",
            f"{row['max_ms']}",
            ", ".join(f"{code}: {n}" for code, n in errors.items()) or "none",
        )
    Console().print(table)


@app.command()
def health(
    service: Annotated[
        str, typer.Argument(help="A service or model name (default: the whole server).")
    ] = "",
    target: TargetOption = "localhost:50051",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """Ask the standard gRPC health service; print the status and exit 0 only when
    SERVING (for container health checks and scripts)."""
    with connected(target, timeout) as client:
        status = client.health(service)
    typer.echo(status)
    if status != "SERVING":
        raise typer.Exit(code=1)


@app.command()
def protos() -> None:
    """Print the folder holding modelwire's .proto files (for generating stubs)."""
    from modelwire.protos import proto_dir

    typer.echo(str(proto_dir()))


def _add_command_groups() -> None:
    from modelwire.cli.certs import certs_app
    from modelwire.cli.config import config_app
    from modelwire.cli.data import data_app
    from modelwire.cli.importing import import_app
    from modelwire.cli.infer import infer
    from modelwire.cli.speech import transcribe
    from modelwire.cli.tokens import tokens_app
    from modelwire.cli.training import jobs_app, train
    from modelwire.cli.vision import read_text

    app.add_typer(data_app, name="data")
    app.command()(infer)
    app.command()(train)
    app.command()(transcribe)
    app.command("read-text")(read_text)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(certs_app, name="certs")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(config_app, name="config")
    app.add_typer(import_app, name="import")


_add_command_groups()
