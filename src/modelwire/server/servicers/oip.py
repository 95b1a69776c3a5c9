"""The Open Inference Protocol's GRPCInferenceService (KServe v2), over the same engine.

Every image model takes its input two ways: the preprocessed FP32 tensor
[N, *per-image shape] (raw_input_contents or typed contents), or a BYTES tensor [N] of
encoded images, decoded and preprocessed on the server. The output is the FP32
probabilities [N, classes]; with the classification extension (an output requested with
the `classification` parameter) it is BYTES [N, k] of "score:index:label".
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator

import numpy as np

from modelwire import __version__
from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelwire.core.inference import Inference, InferenceEngine
from modelwire.errors import InvalidInput, ModelwireError, NotReady
from modelwire.server.status import INTERNAL_MESSAGE, Context, grpc_errors
from modelwire.server.streams import answer_in_order

log = logging.getLogger(__name__)

__all__ = ["SERVICE_NAME", "OipServicer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["classification", "model_repository"]


def parse_version(version: str) -> int | None:
    if not version:
        return None
    if not version.isdigit() or int(version) < 1:
        raise InvalidInput(f"model_version must be a positive number, got {version[:32]!r}")
    return int(version)


def unpack_bytes_elements(raw: bytes, count: int, tensor: str) -> list[bytes]:
    """BYTES tensor elements from raw contents: each a 4-byte little-endian length, then
    that many bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {tensor!r}: raw BYTES contents end inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"input {tensor!r}: a BYTES element runs past the raw contents")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise InvalidInput(f"input {tensor!r}: shape says {count} elements, got {len(elements)}")
    return elements


def pack_bytes_elements(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


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
        models = self._engine.models
        return pb.ServerReadyResponse(ready=any(models.is_serving(n) for n in models.names()))

    @grpc_errors
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        try:
            self._engine.models.resolve(request.name, parse_version(request.version))
        except NotReady:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @grpc_errors
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="modelwire", version=__version__, extensions=EXTENSIONS
        )

    @grpc_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        served = self._engine.models.resolve(request.name, parse_version(request.version))
        classifier = served.classifier
        assert classifier is not None  # a READY version has one
        status = self._engine.models.status(served.model)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=served.model,
            versions=[str(v.version) for v in status.versions if v.state == "READY"],
            platform=PLATFORM,
            inputs=[
                tensor(
                    name=classifier.input_name, datatype="FP32", shape=[-1, *classifier.input_shape]
                )
            ],
            outputs=[
                tensor(
                    name=classifier.output_name,
                    datatype="FP32",
                    shape=[-1, len(classifier.source.labels)],
                )
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
        for status in self._engine.models.statuses():
            if not status.versions:
                if not request.ready:
                    index.models.add(name=status.name, state="UNAVAILABLE", reason=status.reason)
                continue
            for version in status.versions:
                state = "UNAVAILABLE" if version.state == "FAILED" else str(version.state)
                if request.ready and state != "READY":
                    continue
                index.models.add(
                    name=status.name,
                    version=str(version.version),
                    state=state,
                    reason=version.reason,
                )
        return index

    @grpc_errors
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        status = await self._engine.models.load(request.model_name)
        if status.state != "READY":
            raise InvalidInput(f"model {status.name!r} failed to load: {status.reason}")
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
        classifier = served.classifier
        assert classifier is not None
        items = self._inputs(request, classifier.input_name, classifier.input_shape)
        result = await self._engine.infer(items, served.model, served.version)
        response = pb.ModelInferResponse(
            model_name=result.model, model_version=str(result.version), id=request.id
        )
        self._outputs(request, result, response)
        return response

    def _inputs(
        self, request: pb.ModelInferRequest, name: str, shape: tuple[int, ...]
    ) -> list[bytes | np.ndarray]:
        if len(request.inputs) != 1:
            raise InvalidInput(
                f"the model takes exactly one input, {name!r}; got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        if tensor.name != name:
            raise InvalidInput(f"unknown input {tensor.name!r}: the model's input is {name!r}")
        raw = request.raw_input_contents[0] if request.raw_input_contents else None
        dims = list(tensor.shape)
        if tensor.datatype == "BYTES":
            if len(dims) != 1 or dims[0] < 1:
                raise InvalidInput(
                    f"input {name!r}: a BYTES input of encoded images has shape [N], got {dims}"
                )
            if raw is not None:
                return list(unpack_bytes_elements(raw, dims[0], name))
            elements = list(tensor.contents.bytes_contents)
            if len(elements) != dims[0]:
                raise InvalidInput(
                    f"input {name!r}: shape says {dims[0]} elements, got {len(elements)}"
                )
            return list(elements)
        if tensor.datatype != "FP32":
            raise InvalidInput(
                f"input {name!r}: datatype {tensor.datatype!r} is not accepted; send FP32 "
                f"[N, {', '.join(map(str, shape))}] or BYTES [N] of encoded images"
            )
        if len(dims) != 1 + len(shape) or dims[1:] != list(shape) or dims[0] < 1:
            raise InvalidInput(
                f"input {name!r}: FP32 shape must be [N, {', '.join(map(str, shape))}], got {dims}"
            )
        count = int(np.prod(dims))
        if raw is not None:
            if len(raw) != count * 4:
                raise InvalidInput(
                    f"input {name!r}: shape {dims} needs {count * 4} bytes of FP32, got {len(raw)}"
                )
            values = np.frombuffer(raw, dtype="<f4")
        else:
            values = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
            if values.size != count:
                raise InvalidInput(
                    f"input {name!r}: shape {dims} needs {count} FP32 values, got {values.size}"
                )
        return list(values.astype(np.float32).reshape(dims))

    def _outputs(
        self, request: pb.ModelInferRequest, result: Inference, response: pb.ModelInferResponse
    ) -> None:
        name = result.classifier.output_name
        wanted = list(request.outputs) or [
            pb.ModelInferRequest.InferRequestedOutputTensor(name=name)
        ]
        probabilities = result.probabilities
        for output in wanted:
            if output.name != name:
                raise InvalidInput(
                    f"unknown output {output.name!r}: the model's output is {name!r}"
                )
            tensor = response.outputs.add(name=name)
            if "classification" in output.parameters:
                top = int(output.parameters["classification"].int64_param)
                if top < 1:
                    raise InvalidInput("the classification parameter must be at least 1")
                top = min(top, probabilities.shape[1])
                ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
                labels = result.labels
                elements = [
                    f"{probabilities[row, i]:f}:{i}:{labels[i]}".encode()
                    for row in range(len(probabilities))
                    for i in ranked[row]
                ]
                tensor.datatype = "BYTES"
                tensor.shape.extend([len(probabilities), top])
                response.raw_output_contents.append(pack_bytes_elements(elements))
            else:
                tensor.datatype = "FP32"
                tensor.shape.extend(probabilities.shape)
                response.raw_output_contents.append(probabilities.astype("<f4").tobytes())
