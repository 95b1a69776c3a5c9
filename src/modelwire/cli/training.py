"""`modelwire train` and `modelwire jobs`: train new model versions on the server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from modelwire.cli.common import TargetOption, connected, fail
from modelwire.errors import ModelwireError

if TYPE_CHECKING:
    from modelwire.api.v1.training_pb2 import TrainingJob
    from modelwire.client import Client

__all__ = ["jobs_app", "train"]

jobs_app = typer.Typer(help="Training jobs: list, show, watch, cancel.")


def _state(job: TrainingJob) -> str:
    from modelwire.api.v1 import training_pb2

    return training_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")


def train(
    dataset: str,
    model: Annotated[str, typer.Option(help="The model the new version belongs to.")],
    architecture: Annotated[
        str,
        typer.Option(
            help="digits-cnn (small grayscale) or small-resnet (colour) for images; "
            "text-linear or text-mlp for texts (default with --embedding-model: text-linear)."
        ),
    ] = "digits-cnn",
    embedding_model: Annotated[
        str,
        typer.Option(help="For a text dataset: the served text-embedding model to learn on."),
    ] = "",
    input_size: Annotated[
        int, typer.Option(help="Input width and height (default: the architecture's).")
    ] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Adam's learning rate.")] = 0.003,
    validation_fraction: Annotated[
        float, typer.Option(help="Share of each label held out for validation.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split and the weights.")] = 0,
    promote: Annotated[
        str, typer.Option(help="if-better, always or never: make it the default version.")
    ] = "if-better",
    workers: Annotated[
        int, typer.Option(help="Trainer processes (PyTorch DistributedDataParallel).")
    ] = 1,
    watch: Annotated[
        bool, typer.Option(help="Follow the job to its end; exit 1 unless it succeeds.")
    ] = False,
    target: TargetOption = "localhost:50051",
) -> None:
    """Train a new version of MODEL on DATASET (on the server, in its own process)."""
    from modelwire.core.training.spec import JobConfig
    from modelwire.server.training_config import config_message

    try:
        config = config_message(
            JobConfig(
                dataset=dataset,
                model=model,
                architecture=architecture,  # type: ignore[arg-type]  # checked by the mapping
                input_width=input_size,
                input_height=input_size,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                validation_fraction=validation_fraction,
                seed=seed,
                promote=promote,  # type: ignore[arg-type]
                workers=workers,
                embedding_model=embedding_model,
            )
        )
    except ValueError as error:
        raise fail(f"--{error}") from None
    with connected(target) as client:
        job = client.start_training(config)
        typer.echo(f"job {job.id} {_state(job)}: {model} on {dataset}")
        if watch:
            _follow(client, job.id)


def _follow(client: Client, job_id: str) -> None:
    """A live progress bar until the job ends; exit 1 unless it SUCCEEDED."""
    from rich.progress import BarColumn, Progress, TextColumn

    job = client.get_training_job(job_id)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        transient=True,
    ) as progress:
        task = progress.add_task(f"training {job_id}", total=1.0, status="")
        try:
            for job in client.watch_training(job_id):
                accuracy = (
                    f"val acc {job.history[-1].validation_accuracy:.3f}" if job.history else ""
                )
                eta = f"ETA {job.eta_seconds:.0f}s" if job.eta_seconds else ""
                status = f"{_state(job)} epoch {job.epoch}/{job.config.epochs} {accuracy} {eta}"
                progress.update(task, completed=job.progress, status=status)
        except ModelwireError as error:
            raise fail(error.message) from None
    if _state(job) != "SUCCEEDED":
        raise fail(f"job {job_id} {_state(job)}: {job.reason}")
    promoted = "promoted to default" if job.promoted else "not promoted"
    final = job.history[-1].validation_accuracy if job.history else 0.0
    typer.echo(
        f"job {job_id} SUCCEEDED: {job.config.model} version {job.version} "
        f"(validation accuracy {final:.4f}, {promoted})"
    )


@jobs_app.callback(invoke_without_command=True)
def jobs(ctx: typer.Context, target: TargetOption = "localhost:50051") -> None:
    """List training jobs, newest first (or: jobs show|watch|cancel ID)."""
    if ctx.invoked_subcommand is not None:
        return

    with connected(target) as client:
        listed = client.list_training_jobs()
    for job in listed:
        version = f"v{job.version}" if job.version else ""
        reason = f" - {job.reason}" if job.reason else ""
        typer.echo(
            f"{job.id}\t{_state(job)}\t{job.config.model} {version}\t{job.config.dataset}\t"
            f"epoch {job.epoch}/{job.config.epochs}{reason}"
        )


@jobs_app.command("show")
def show(job_id: str, target: TargetOption = "localhost:50051") -> None:
    """Describe a job as JSON."""
    from google.protobuf import json_format

    with connected(target) as client:
        job = client.get_training_job(job_id)
    typer.echo(json_format.MessageToJson(job, preserving_proto_field_name=True))


@jobs_app.command("watch")
def watch(job_id: str, target: TargetOption = "localhost:50051") -> None:
    """Follow a job to its end; exit 1 unless it succeeds."""
    with connected(target) as client:
        _follow(client, job_id)


@jobs_app.command("cancel")
def cancel(job_id: str, target: TargetOption = "localhost:50051") -> None:
    """Cancel a queued or running job."""
    with connected(target) as client:
        job = client.cancel_training(job_id)
    typer.echo(f"job {job.id} {_state(job)}")
