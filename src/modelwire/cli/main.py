"""The `modelwire` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from modelwire.cli.common import TargetOption, client_options, connect, connected, fail
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


@app.command()
def serve(
    host: Annotated[
        list[str] | None,
        typer.Option(help="Address to listen on (repeatable). Default: 127.0.0.1 and ::1."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port (default 50051; 0: any).")] = None,
    rest_port: Annotated[
        str | None,
        typer.Option(help="REST gateway port (default 8080; 0: any free port; off: no REST)."),
    ] = None,
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
    model_repository: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of models to serve (repeatable); the first naming a model wins."),
    ] = None,
    default_models: Annotated[
        bool | None,
        typer.Option(
            "--default-models/--no-default-model",
            help="Also serve the built-in digits model (default: yes).",
        ),
    ] = None,
    default_model: Annotated[
        str | None, typer.Option(help="Model used when a request names none.")
    ] = None,
    poll_repository: Annotated[
        float | None,
        typer.Option(help="Seconds between repository scans for new/changed models (0: off)."),
    ] = None,
    stream_window: Annotated[
        int | None, typer.Option(help="Messages of one stream processed at once (default 64).")
    ] = None,
    reflection: Annotated[
        bool | None, typer.Option("--reflection/--no-reflection", help="Serve reflection.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where datasets, jobs and trained versions are kept."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL for dataset/job records (default: SQLite in data dir)."),
    ] = None,
    max_upload_examples: Annotated[
        int | None, typer.Option(help="Most examples per upload stream (default 1,000,000).")
    ] = None,
    max_example_bytes: Annotated[
        int | None, typer.Option(help="Largest image accepted into a dataset (default 10 MiB).")
    ] = None,
    training_jobs: Annotated[
        int | None, typer.Option(help="Training jobs run at once (default 1).")
    ] = None,
    training_threads: Annotated[
        int | None, typer.Option(help="PyTorch threads per training job (default 1).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: TLS on the gRPC and REST ports.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option(help="PEM CA: require client certificates it signed (mTLS).")
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option(help="Allow plaintext on a non-loopback address (otherwise refused)."),
    ] = None,
    tokens: Annotated[
        Path | None,
        typer.Option(help="Tokens file (modelwire tokens add): turns authentication on."),
    ] = None,
    max_concurrent_rpcs: Annotated[
        int | None, typer.Option(help="Calls served at once; more get RESOURCE_EXHAUSTED.")
    ] = None,
    max_concurrent_streams: Annotated[
        int | None, typer.Option(help="HTTP/2 streams per connection (default 100).")
    ] = None,
    keepalive_min_ping_interval: Annotated[
        float | None, typer.Option(help="Seconds clients must leave between pings (default 10).")
    ] = None,
    keepalive_max_ping_strikes: Annotated[
        int | None, typer.Option(help="Too-frequent pings before GOAWAY (default 2).")
    ] = None,
    max_connection_age: Annotated[
        float | None, typer.Option(help="Seconds before a connection is recycled (default never).")
    ] = None,
    max_upload_bytes: Annotated[
        int | None, typer.Option(help="Image bytes per upload stream (default 2 GiB).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics on this port (default: the REST port).")
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(help="Plaintext port serving only the gRPC health service (probes)."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one JSON object per line.")
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(help="Server processes sharing the ports (default 1; auto: one per CPU)."),
    ] = None,
    event_loop: Annotated[
        str | None, typer.Option(help="asyncio (default) or uvloop (the `uvloop` extra).")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="Where ONNX models run unless model.toml says: cpu, cuda, cuda:N, auto."),
    ] = None,
    allow_python_models: Annotated[
        bool | None,
        typer.Option(
            "--allow-python-models/--no-python-models",
            help="Serve Python models (model.py): runs repository code in the server.",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file with settings (flags and env win).")
    ] = None,
) -> None:
    """Serve the models over gRPC (and REST) until SIGTERM or Ctrl-C."""
    from modelwire.assembly import loop_factory
    from modelwire.assembly import serve as run_server
    from modelwire.logs import configure_logging
    from modelwire.server.supervisor import supervise
    from modelwire.settings import load_settings

    try:
        settings = load_settings(
            config,
            hosts=host,
            port=port,
            rest_port=rest_port,
            threads=threads,
            grace_period_s=grace_period,
            max_message_bytes=max_message_bytes,
            max_image_pixels=max_image_pixels,
            model_repositories=model_repository,
            default_models=default_models,
            default_model=default_model,
            poll_repository_s=poll_repository,
            stream_window=stream_window,
            reflection=reflection,
            data_dir=data_dir,
            database_url=database_url,
            max_upload_examples=max_upload_examples,
            max_example_bytes=max_example_bytes,
            training_jobs=training_jobs,
            training_threads=training_threads,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            insecure=insecure,
            tokens_file=tokens,
            max_concurrent_rpcs=max_concurrent_rpcs,
            device=device,
            allow_python_models=allow_python_models,
            max_concurrent_streams=max_concurrent_streams,
            keepalive_min_ping_interval_s=keepalive_min_ping_interval,
            keepalive_max_ping_strikes=keepalive_max_ping_strikes,
            max_connection_age_s=max_connection_age,
            max_upload_bytes=max_upload_bytes,
            metrics_port=metrics_port,
            health_port=health_port,
            log_format=log_format,
            event_loop=event_loop,
            workers=workers,
        )
    except (ValidationError, FileNotFoundError) as exc:
        raise fail(f"bad settings: {exc}") from None
    configure_logging(settings.log_format)
    try:
        loop_factory(settings)  # a missing uvloop fails here, not in every worker
        if settings.worker_count > 1:
            supervise(settings)
        else:
            run_server(settings)
    except (ModelwireError, OSError) as exc:
        raise fail(str(exc)) from None


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
