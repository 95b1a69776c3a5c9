"""modelwire.api.v1.DatasetService: datasets of labelled images or texts, uploaded and
exported over gRPC."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from modelwire.api.v1 import datasets_pb2 as pb
from modelwire.api.v1 import datasets_pb2_grpc as pb_grpc
from modelwire.core.datasets import DatasetInfo, Datasets, Example, UploadItem
from modelwire.core.inference import InferenceEngine
from modelwire.errors import InvalidInput
from modelwire.server.status import Context, abort_for, grpc_errors

__all__ = ["SERVICE_NAME", "DatasetServicer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DatasetService"].full_name


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


#: The store's dataset kinds as the API's enum, and back.
KINDS = {"image": pb.DATASET_KIND_IMAGE, "text": pb.DATASET_KIND_TEXT}
_KIND_NAMES = {number: name for name, number in KINDS.items()}
_KIND_NAMES[pb.DATASET_KIND_UNSPECIFIED] = "image"


def dataset_message(info: DatasetInfo) -> pb.Dataset:
    return pb.Dataset(
        kind=KINDS[info.kind],
        name=info.name,
        description=info.description,
        label_counts=info.label_counts,
        examples=info.examples,
        total_bytes=info.total_bytes,
        create_time=timestamp(info.created),
        update_time=timestamp(info.updated),
    )


class DatasetServicer(pb_grpc.DatasetServiceServicer):
    def __init__(
        self,
        datasets: Datasets,
        engine: InferenceEngine,
        *,
        max_examples: int,
        max_example_bytes: int,
        max_stream_bytes: int | None = None,
    ) -> None:
        self._datasets = datasets
        self._store = datasets.store
        self._engine = engine
        self._max_examples = max_examples
        self._max_example_bytes = max_example_bytes
        self._max_stream_bytes = max_stream_bytes

    @grpc_errors
    async def CreateDataset(
        self, request: pb.CreateDatasetRequest, context: Context
    ) -> pb.CreateDatasetResponse:
        kind = _KIND_NAMES.get(request.kind)
        if kind is None:
            raise InvalidInput(f"kind {request.kind} is not a DatasetKind", field="kind")
        info = await self._datasets.run(self._store.create, request.name, request.description, kind)
        return pb.CreateDatasetResponse(dataset=dataset_message(info))

    @grpc_errors
    async def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: Context
    ) -> pb.ListDatasetsResponse:
        infos = await self._datasets.run(self._store.list)
        return pb.ListDatasetsResponse(datasets=[dataset_message(i) for i in infos])

    @grpc_errors
    async def GetDataset(
        self, request: pb.GetDatasetRequest, context: Context
    ) -> pb.GetDatasetResponse:
        info = await self._datasets.run(self._store.get, request.name)
        return pb.GetDatasetResponse(dataset=dataset_message(info))

    @grpc_errors
    async def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: Context
    ) -> pb.DeleteDatasetResponse:
        await self._datasets.run(self._store.delete, request.name)
        return pb.DeleteDatasetResponse()

    @grpc_errors
    async def UploadExamples(
        self, request_iterator: AsyncIterator[pb.UploadExamplesRequest], context: Context
    ) -> pb.UploadExamplesResponse:
        async def items() -> AsyncIterator[UploadItem]:
            async for message in request_iterator:
                yield UploadItem(
                    message.dataset,
                    message.label,
                    message.image,
                    message.client_id,
                    message.idempotency_key,
                    message.text,
                )

        summary = await self._datasets.upload(
            items(),
            self._engine.check_image,
            max_examples=self._max_examples,
            max_example_bytes=self._max_example_bytes,
            max_stream_bytes=self._max_stream_bytes,
        )
        return pb.UploadExamplesResponse(
            accepted=summary.accepted,
            duplicates=summary.duplicates,
            rejected=[
                pb.RejectedExample(client_id=r.client_id, index=r.index, reason=r.reason)
                for r in summary.rejected
            ],
        )

    async def ExportExamples(
        self, request: pb.ExportExamplesRequest, context: Context
    ) -> AsyncIterator[pb.ExportExamplesResponse]:
        try:
            kind = (await self._datasets.run(self._store.get, request.dataset)).kind
            examples: list[Example] = await self._datasets.run(
                functools.partial(list, self._store.examples(request.dataset))
            )
        except Exception as error:
            await abort_for(error, context, "ExportExamples")
            return
        for example in examples:
            data = await self._datasets.run(example.path.read_bytes)
            if kind == "text":
                yield pb.ExportExamplesResponse(
                    label=example.label, text=data.decode(), sha256=example.sha256
                )
            else:
                yield pb.ExportExamplesResponse(
                    label=example.label, image=data, sha256=example.sha256
                )
