"""modelwire.api.v1.TrainingService: start, watch, cancel and list training jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from modelwire.api.v1 import training_pb2 as pb
from modelwire.api.v1 import training_pb2_grpc as pb_grpc
from modelwire.core.training.job import Job, JobState
from modelwire.core.training.jobs import TrainingJobs
from modelwire.server.servicers.datasets import timestamp
from modelwire.server.status import Context, abort_for, grpc_errors
from modelwire.server.training_config import config_message, job_config

__all__ = ["SERVICE_NAME", "TrainingServicer", "job_message"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TrainingService"].full_name

_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}


def job_message(job: Job) -> pb.TrainingJob:
    message = pb.TrainingJob(
        id=job.id,
        config=config_message(job.config),
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
