"""The Open Inference Protocol (KServe v2) over HTTP/JSON, over the same engine.

Tensors travel as JSON (`data`, flat or nested row-major), or with the binary tensor
data extension: the JSON header, then the raw tensors, with the header's length in the
`Inference-Header-Content-Length` header and each binary input's size in its
`binary_data_size` parameter. An output asked for with `binary_data: true` (or every
output, when the request's `binary_data_output` parameter is true) comes back the same
way. In JSON, BYTES elements are strings (UTF-8 text); an image model's encoded images
are base64 strings.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, StrictInt

from modelwire import __version__
from modelwire.core import oip, tensors
from modelwire.core.inference import InferenceEngine, TensorResult
from modelwire.core.tasks import Item
from modelwire.errors import InvalidInput
from modelwire.rest.body import off_loop, parse_json, read_body

__all__ = ["InferenceRequest", "InferenceResponse", "oip_router"]

HEADER_LENGTH = "Inference-Header-Content-Length"


class RequestInput(BaseModel):
    name: str
    shape: list[StrictInt]  # true or 2.0 is not a dimension
    datatype: str
    parameters: dict[str, Any] = {}
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] = {}


class InferenceRequest(BaseModel):
    id: str = ""
    parameters: dict[str, Any] = {}
    inputs: list[RequestInput]
    outputs: list[RequestOutput] = []


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str = ""
    outputs: list[ResponseOutput]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RepositoryIndexRequest(BaseModel):
    ready: bool = False


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: str
    reason: str


def oip_router(engine: InferenceEngine, max_body_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])
    models = engine.models

    @router.get("", response_model=ServerMetadata)
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(
            name="modelwire", version=__version__, extensions=list(oip.EXTENSIONS)
        )

    @router.get("/health/live", responses={200: {"description": "The server is live."}})
    async def server_live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready", responses={400: {"description": "No model can serve (yet)."}})
    async def server_ready() -> JSONResponse:
        return _boolean("ready", oip.server_ready(models))

    @router.get("/models/{name}/ready", responses={400: {"description": "Not ready."}})
    async def model_ready(name: str) -> JSONResponse:
        return _boolean("ready", oip.model_ready(models, name, ""))

    @router.get(
        "/models/{name}/versions/{version}/ready", responses={400: {"description": "Not ready."}}
    )
    async def model_version_ready(name: str, version: str) -> JSONResponse:
        return _boolean("ready", oip.model_ready(models, name, version))

    @router.get("/models/{name}", response_model=ModelMetadata)
    async def model_metadata(name: str) -> ModelMetadata:
        return _metadata(oip.model_metadata(models, name, ""))

    @router.get("/models/{name}/versions/{version}", response_model=ModelMetadata)
    async def model_version_metadata(name: str, version: str) -> ModelMetadata:
        return _metadata(oip.model_metadata(models, name, version))

    infer_docs: dict[str, Any] = {
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/InferenceRequest"}
                    },
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"},
                    },
                },
            }
        },
        "responses": {200: {"model": InferenceResponse}},
    }

    @router.post("/models/{name}/infer", **infer_docs)
    async def infer(name: str, request: Request) -> Response:
        """Run the model on a JSON (or binary tensor data) inference request."""
        return await _infer(engine, name, "", request, max_body_bytes)

    @router.post("/models/{name}/versions/{version}/infer", **infer_docs)
    async def infer_version(name: str, version: str, request: Request) -> Response:
        """Run one version of the model."""
        return await _infer(engine, name, version, request, max_body_bytes)

    @router.post("/repository/index", response_model=list[RepositoryEntry])
    async def repository_index(body: RepositoryIndexRequest | None = None) -> list[RepositoryEntry]:
        ready = body.ready if body is not None else False
        return [
            RepositoryEntry(name=e.name, version=e.version, state=e.state, reason=e.reason)
            for e in oip.repository_index(models, ready)
        ]

    @router.post("/repository/models/{name}/load")
    async def repository_load(name: str) -> dict[str, str]:
        await oip.load_model(models, name)
        return {}

    @router.post("/repository/models/{name}/unload")
    async def repository_unload(name: str) -> dict[str, str]:
        await models.unload(name)
        return {}

    return router


def _boolean(key: str, value: bool) -> JSONResponse:
    # The protocol's health answers: 200 for true, a 4xx for false.
    return JSONResponse({key: value}, 200 if value else 400)


def _metadata(metadata: oip.ModelMetadata) -> ModelMetadata:
    return ModelMetadata(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[
            TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs
        ],
        outputs=[
            TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in metadata.outputs
        ],
    )


async def _infer(
    engine: InferenceEngine, name: str, version: str, request: Request, limit: int
) -> Response:
    parsed_version = oip.parse_version(version)
    engine.models.resolve(name, parsed_version)  # 404 or 503 before reading a body
    body = await read_body(request, limit)
    # Resolved again after the body: a reload may have switched versions meanwhile.
    served = engine.models.resolve(name, parsed_version)
    images = served.task.name == "image-classification"

    def parse() -> tuple[InferenceRequest, list[Item]]:
        header, binary = _split(body, request.headers.get(HEADER_LENGTH))
        parsed = parse_json(InferenceRequest, header, "inference request")
        return parsed, oip.request_items(_input_tensors(parsed, binary, images), served)

    parsed, items = await off_loop(len(body), parse)
    result = await engine.infer(served, items, checked=True)
    size = sum(array.size for array in result.outputs.values())
    return await off_loop(size * 16, lambda: _response(parsed, result))


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not (header_length.isascii() and header_length.isdigit()) or (
        int(header_length) > len(body)
    ):
        raise InvalidInput(
            f"{HEADER_LENGTH} must be the JSON header's length in bytes, at most the body's "
            f"{len(body)}; got {header_length[:32]!r}",
            field="body",
        )
    length = int(header_length)
    return body[:length], body[length:]


def _input_tensors(request: InferenceRequest, binary: bytes, images: bool) -> list[oip.InputTensor]:
    tensors, offset = [], 0
    for tensor in request.inputs:
        size = tensor.parameters.get("binary_data_size")
        if size is not None and tensor.data is not None:
            raise InvalidInput(
                f"input {tensor.name[:64]!r} has both data and a binary_data_size parameter: "
                "send one or the other",
                field="inputs",
            )
        if size is not None:
            if (
                not isinstance(size, int)
                or isinstance(size, bool)
                or size < 0
                or offset + size > len(binary)
            ):
                raise InvalidInput(
                    f"input {tensor.name[:64]!r}: binary_data_size {str(size)[:32]} runs past the "
                    f"{len(binary)} bytes of binary data after the JSON header",
                    field="inputs",
                )
            raw = binary[offset : offset + size]
            offset += size
            tensors.append(oip.InputTensor(tensor.name, tensor.datatype, tensor.shape, raw))
            continue
        if tensor.data is None:
            raise InvalidInput(
                f"input {tensor.name[:64]!r} has neither data nor a binary_data_size parameter",
                field="inputs",
            )
        values = tensor.data
        if tensor.datatype == "BYTES":
            values = _base64_elements(tensor) if images else _text_elements(tensor)
        tensors.append(oip.InputTensor(tensor.name, tensor.datatype, tensor.shape, None, values))
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes of binary data after the JSON header belong to "
            "no input: check the binary_data_size parameters",
            field="inputs",
        )
    return tensors


def _flag(parameters: dict[str, Any], name: str, default: bool = False) -> bool:
    """A true/false request parameter; InvalidInput for anything else ("false" too)."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"the {name} parameter must be true or false", field="outputs")
    return value


def _text_elements(tensor: RequestInput) -> list[bytes]:
    assert tensor.data is not None
    flat = np.asarray(tensor.data, dtype=object).reshape(-1)
    if not all(isinstance(element, str) for element in flat):
        raise InvalidInput(
            f"input {tensor.name!r}: in JSON, BYTES elements are strings (or send them raw "
            "with the binary tensor data extension)",
            field="inputs",
        )
    return [element.encode() for element in flat]


def _base64_elements(tensor: RequestInput) -> list[bytes]:
    assert tensor.data is not None
    flat = np.asarray(tensor.data, dtype=object).reshape(-1)
    try:
        return [base64.b64decode(element, validate=True) for element in flat]
    except (binascii.Error, TypeError, ValueError):
        raise InvalidInput(
            f"input {tensor.name!r}: in JSON, each BYTES element must be a base64-encoded "
            "image (or send the images raw with the binary tensor data extension)",
            field="inputs",
        ) from None


def _response(request: InferenceRequest, result: TensorResult) -> Response:
    binary_default = _flag(request.parameters, "binary_data_output")
    requested = {output.name: output for output in request.outputs}
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in oip.select_outputs(result.outputs, list(requested)):
        array = result.outputs[name]
        wanted = requested.get(name)
        parameters = wanted.parameters if wanted is not None else {}
        binary = _flag(parameters, "binary_data", binary_default)
        top = parameters.get("classification")
        if top is not None:
            if not isinstance(top, int) or isinstance(top, bool):
                raise InvalidInput(
                    "the classification parameter must be an integer", field="outputs"
                )
            elements = oip.classification_elements(array, result.labels, top)
            rows = len(result.outputs[name])
            array = np.empty(len(elements), dtype=object)
            array[:] = elements
            array = array.reshape(rows, len(elements) // rows if rows else 0)
        datatype = tensors.datatype_of(array).name
        described: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blobs.append(tensors.to_raw(array))
            described["parameters"] = {"binary_data_size": len(blobs[-1])}
        elif datatype == "BYTES":
            described["data"] = [e.decode(errors="replace") for e in array.reshape(-1)]
        else:
            described["data"] = array.reshape(-1).tolist()
        outputs.append(described)
    answer = {
        "model_name": result.model,
        "model_version": str(result.version),
        "id": request.id,
        "outputs": outputs,
    }
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        b"".join([header, *blobs]),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )
