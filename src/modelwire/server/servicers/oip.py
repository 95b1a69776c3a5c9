"""The Open Inference Protocol's GRPCInferenceService (KServe v2), over the same engine.

The protocol's rules live in `modelwire.core.oip`; this module turns its messages into
those objects and back. Inputs come in raw_input_contents or in the typed contents
field of their datatype; outputs always leave in raw_output_contents, or with the
classification extension as BYTES [N, k] of "score:index:label".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from modelwire import __version__
from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelwire.core.inference import InferenceEngine, TensorResult
from modelwire.core.oip import (
    EXTENSIONS,
    InputTensor,
    classification_elements,
    load_model,
    model_metadata,
    model_ready,
    parse_version,
    repository_index,
    request_items,
    select_outputs,
    server_ready,
)
from modelwire.core.tensors import datatype_of, pack_bytes, to_raw
from modelwire.errors import INTERNAL_MESSAGE, InvalidInput, ModelwireError
from modelwire.server.status import Context, grpc_errors
from modelwire.server.streams import answer_in_order

log = logging.getLogger(__name__)

__all__ = ["SERVICE_NAME", "TYPED_CONTENTS", "OipServicer"]

#: Requests larger than this are checked and parsed off the event loop.
_PARSE_ON_LOOP_BYTES = 256 * 1024

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

#: Where each datatype's typed values travel in InferTensorContents (FP16 has no field:
#: it travels raw only).
TYPED_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _per_element(request: pb.ModelInferRequest) -> bool:
    """Whether reading the inputs takes work per element: typed contents, or BYTES."""
    return not request.raw_input_contents or any(t.datatype == "BYTES" for t in request.inputs)


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: InferenceEngine, stream_window: int) -> None:
        self._engine = engine
        self._window = stream_window

    @grpc_errors
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @grpc_errors
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=server_ready(self._engine.models))

    @grpc_errors
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(
            ready=model_ready(self._engine.models, request.name, request.version)
        )

    @grpc_errors
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="modelwire", version=__version__, extensions=list(EXTENSIONS)
        )

    @grpc_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        metadata = model_metadata(self._engine.models, request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata.name,
            versions=metadata.versions,
            platform=metadata.platform,
            inputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs
            ],
            outputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.outputs
            ],
        )

    @grpc_errors
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        return await self._infer(request)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        answers = answer_in_order(request_iterator, self._stream_answer, self._window)
        async for response in answers:
            yield response

    async def _stream_answer(self, request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
        try:
            return pb.ModelStreamInferResponse(infer_response=await self._infer(request))
        except ModelwireError as error:
            message = error.message
        except Exception:
            log.exception("unexpected error in a ModelStreamInfer message")
            message = INTERNAL_MESSAGE
        failed = pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        return pb.ModelStreamInferResponse(error_message=message, infer_response=failed)

    @grpc_errors
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse()
        for entry in repository_index(self._engine.models, request.ready):
            index.models.add(
                name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
            )
        return index

    @grpc_errors
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        await load_model(self._engine.models, request.model_name)
        return pb.RepositoryModelLoadResponse()

    @grpc_errors
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        await self._engine.models.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        version = parse_version(request.model_version)
        served = self._engine.models.resolve(request.model_name, version)
        if _per_element(request) and request.ByteSize() > _PARSE_ON_LOOP_BYTES:
            # Millions of typed values or BYTES elements take seconds to check: in a
            # worker thread, so other calls (health checks too) go on meanwhile. (Raw
            # contents of other datatypes are taken as they are, at once: no hop.)
            items = await asyncio.to_thread(
                lambda: request_items(self._input_tensors(request), served)
            )
        else:
            items = request_items(self._input_tensors(request), served)
        result = await self._engine.infer(served, items, checked=True)
        response = pb.ModelInferResponse(
            model_name=result.model, model_version=str(result.version), id=request.id
        )
        self._outputs(request, result, response)
        return response

    @staticmethod
    def _input_tensors(request: pb.ModelInferRequest) -> list[InputTensor]:
        raw_contents = request.raw_input_contents
        if raw_contents and len(raw_contents) != len(request.inputs):
            raise InvalidInput(
                f"raw_input_contents has {len(raw_contents)} entries for "
                f"{len(request.inputs)} inputs: send one raw entry per input, in order, "
                "or typed contents for all of them",
                field="inputs",
            )
        tensors = []
        for i, tensor in enumerate(request.inputs):
            raw = raw_contents[i] if raw_contents else None
            contents = tensor.contents
            if raw is not None and contents.ByteSize():
                raise InvalidInput(
                    f"input {tensor.name[:64]!r} has both typed contents and raw_input_contents: "
                    "send one or the other",
                    field="inputs",
                )
            values: list[object] = []
            if raw is None and contents.ByteSize():
                field = TYPED_CONTENTS.get(tensor.datatype)
                given = [f.name for f, _ in contents.ListFields()]
                if field is None or given != [field]:
                    where = f"in {field}" if field else "in raw_input_contents only"
                    raise InvalidInput(
                        f"input {tensor.name[:64]!r}: typed {tensor.datatype[:32]} values travel "
                        f"{where}; got {', '.join(given)}",
                        field="inputs",
                    )
                values = list(getattr(contents, field))
            tensors.append(
                InputTensor(tensor.name, tensor.datatype, list(tensor.shape), raw, values)
            )
        return tensors

    def _outputs(
        self, request: pb.ModelInferRequest, result: TensorResult, response: pb.ModelInferResponse
    ) -> None:
        requested = {output.name: output for output in request.outputs}
        names = select_outputs(result.outputs, list(requested)) if requested else result.outputs
        for name in names:
            array = result.outputs[name]
            tensor = response.outputs.add(name=name)
            wanted = requested.get(name)
            if wanted is not None and "classification" in wanted.parameters:
                top = int(wanted.parameters["classification"].int64_param)
                elements = classification_elements(array, result.labels, top)
                tensor.datatype = "BYTES"
                tensor.shape.extend([len(array), len(elements) // max(1, len(array))])
                response.raw_output_contents.append(pack_bytes(elements))
            else:
                tensor.datatype = datatype_of(array).name
                tensor.shape.extend(array.shape)
                response.raw_output_contents.append(to_raw(array))
