"""modelwire.api.v1.TrainingService: start, watch, cancel and list training jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from modelwire.api.v1 import training_pb2 as pb
from modelwire.api.v1 import training_pb2_grpc as pb_grpc
from modelwire.core.training.jobs import Job, JobState, TrainingJobs
from modelwire.core.training.spec import JobConfig
from modelwire.server.servicers.datasets import timestamp
from modelwire.server.status import Context, abort_for, grpc_errors

__all__ = ["SERVICE_NAME", "TrainingServicer", "job_config", "job_message"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TrainingService"].full_name

_ARCHITECTURES = {
    pb.ARCHITECTURE_UNSPECIFIED: "digits-cnn",
    pb.ARCHITECTURE_DIGITS_CNN: "digits-cnn",
    pb.ARCHITECTURE_SMALL_RESNET: "small-resnet",
    pb.ARCHITECTURE_TEXT_LINEAR: "text-linear",
    pb.ARCHITECTURE_TEXT_MLP: "text-mlp",
}
_ARCHITECTURE_ENUMS = {
    "digits-cnn": pb.ARCHITECTURE_DIGITS_CNN,
    "small-resnet": pb.ARCHITECTURE_SMALL_RESNET,
    "text-linear": pb.ARCHITECTURE_TEXT_LINEAR,
    "text-mlp": pb.ARCHITECTURE_TEXT_MLP,
}
_PROMOTE = {
    pb.PROMOTE_POLICY_UNSPECIFIED: "if-better",
    pb.PROMOTE_POLICY_IF_BETTER: "if-better",
    pb.PROMOTE_POLICY_ALWAYS: "always",
    pb.PROMOTE_POLICY_NEVER: "never",
}
_PROMOTE_ENUMS = {
    "if-better": pb.PROMOTE_POLICY_IF_BETTER,
    "always": pb.PROMOTE_POLICY_ALWAYS,
    "never": pb.PROMOTE_POLICY_NEVER,
}
_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}


def job_config(message: pb.TrainingConfig) -> JobConfig:
    """The message's config, zero fields taking the defaults."""
    defaults = JobConfig(dataset="", model="")
    return JobConfig(
        dataset=message.dataset,
        model=message.model,
        architecture=_ARCHITECTURES.get(message.architecture, "digits-cnn"),  # type: ignore[arg-type]
        input_width=message.input_width,
        input_height=message.input_height,
        epochs=message.epochs or defaults.epochs,
        batch_size=message.batch_size or defaults.batch_size,
        learning_rate=message.learning_rate or defaults.learning_rate,
        validation_fraction=message.validation_fraction or defaults.validation_fraction,
        seed=message.seed,
        promote=_PROMOTE.get(message.promote, "if-better"),  # type: ignore[arg-type]
        workers=message.workers or defaults.workers,
        embedding_model=message.embedding_model,
    )


def job_message(job: Job) -> pb.TrainingJob:
    config = job.config
    message = pb.TrainingJob(
        id=job.id,
        config=pb.TrainingConfig(
            dataset=config.dataset,
            model=config.model,
            architecture=_ARCHITECTURE_ENUMS[config.architecture],
            input_width=config.input_width,
            input_height=config.input_height,
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            validation_fraction=config.validation_fraction,
            seed=config.seed,
            promote=_PROMOTE_ENUMS[config.promote],
            workers=config.workers,
            embedding_model=config.embedding_model,
        ),
        state=_STATES[job.state],
        reason=job.reason,
        epoch=job.epoch,
        progress=job.progress,
        eta_seconds=job.eta_s,
        history=[
            pb.EpochMetrics(
                epoch=e.epoch,
                train_loss=e.train_loss,
                validation_loss=e.validation_loss,
                validation_accuracy=e.validation_accuracy,
            )
            for e in job.history
        ],
        version=job.version,
        promoted=job.promoted,
        create_time=timestamp(job.created),
    )
    if job.started:
        message.start_time.CopyFrom(timestamp(job.started))
    if job.ended:
        message.end_time.CopyFrom(timestamp(job.ended))
    return message


class TrainingServicer(pb_grpc.TrainingServiceServicer):
    def __init__(self, jobs: TrainingJobs) -> None:
        self._jobs = jobs

    @grpc_errors
    async def StartTraining(
        self, request: pb.StartTrainingRequest, context: Context
    ) -> pb.StartTrainingResponse:
        job = await self._jobs.start(job_config(request.config))
        return pb.StartTrainingResponse(job=job_message(job))

    async def WatchTraining(
        self, request: pb.WatchTrainingRequest, context: Context
    ) -> AsyncIterator[pb.WatchTrainingResponse]:
        try:
            async for job in self._jobs.watch(request.id):
                yield pb.WatchTrainingResponse(job=job_message(job))
        except Exception as error:
            await abort_for(error, context, "WatchTraining")

    @grpc_errors
    async def CancelTraining(
        self, request: pb.CancelTrainingRequest, context: Context
    ) -> pb.CancelTrainingResponse:
        return pb.CancelTrainingResponse(job=job_message(await self._jobs.cancel(request.id)))

    @grpc_errors
    async def ListTrainingJobs(
        self, request: pb.ListTrainingJobsRequest, context: Context
    ) -> pb.ListTrainingJobsResponse:
        return pb.ListTrainingJobsResponse(
            jobs=[job_message(j) for j in await self._jobs.list_jobs()]
        )

    @grpc_errors
    async def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: Context
    ) -> pb.GetTrainingJobResponse:
        return pb.GetTrainingJobResponse(job=job_message(await self._jobs.get(request.id)))
