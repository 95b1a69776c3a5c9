"""What the blocking and asyncio clients share: inputs, results, options, errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from modelwire.api.oip import grpc_predict_v2_pb2 as oip_pb2
from modelwire.api.v1 import datasets_pb2, inference_pb2
from modelwire.datatypes import DATATYPES, datatype_of, to_raw, unpack_bytes
from modelwire.errors import InvalidInput, ModelwireError, error_for_status

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview

T = TypeVar("T")

#: Tensors by name; BYTES tensors are numpy object arrays of bytes (str is sent as UTF-8).
Tensors = dict[str, np.ndarray]


_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class ClassScore:
    label: str
    index: int
    score: float


@dataclass(frozen=True)
class ClassificationResult:
    """The ranked classes for one image; `label` and `score` are the top class's."""

    model: str
    version: int
    classes: tuple[ClassScore, ...]

    @property
    def label(self) -> str:
        return self.classes[0].label

    @property
    def score(self) -> float:
        return self.classes[0].score


def read_image(image: ImageInput) -> bytes:
    """Bytes as they are; a str or path is a file to read."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    return Path(image).read_bytes()


def classify_request(
    image: ImageInput, model: str | None, version: int | None, top_k: int
) -> inference_pb2.ClassifyRequest:
    return inference_pb2.ClassifyRequest(
        model=model or "", version=version or 0, image=read_image(image), top_k=top_k
    )


def stream_requests(
    images: Iterable[ImageInput], model: str | None, version: int | None, top_k: int
) -> Iterator[inference_pb2.ClassifyStreamRequest]:
    """One stream message per image, ids "0", "1", ... in order, read lazily."""
    for index, image in enumerate(images):
        yield inference_pb2.ClassifyStreamRequest(
            id=str(index), request=classify_request(image, model, version, top_k)
        )


@dataclass(frozen=True)
class Example:
    """One labelled image to upload; `client_id` comes back with its reason if refused
    (default: the file name, for a path)."""

    label: str
    image: ImageInput
    client_id: str = ""


@dataclass(frozen=True)
class TextExample:
    """One labelled text to upload to a text dataset; `client_id` comes back with its
    reason if refused."""

    label: str
    text: str
    client_id: str = ""


#: Dataset kinds by name, as the API numbers them.
DATASET_KINDS = {"image": datasets_pb2.DATASET_KIND_IMAGE, "text": datasets_pb2.DATASET_KIND_TEXT}


def upload_requests(
    dataset: str, examples: Iterable[Example | TextExample], idempotency_key: str = ""
) -> Iterator[datasets_pb2.UploadExamplesRequest]:
    """One message per example, read lazily; the first names the dataset (and the
    upload's idempotency key)."""
    for index, example in enumerate(examples):
        message = datasets_pb2.UploadExamplesRequest(label=example.label)
        if index == 0:
            message.dataset, message.idempotency_key = dataset, idempotency_key
        if isinstance(example, TextExample):
            message.text, message.client_id = example.text, example.client_id
        else:
            message.image = read_image(example.image)
            message.client_id = example.client_id or (
                ""
                if isinstance(example.image, bytes | bytearray | memoryview)
                else str(example.image)
            )
        yield message


class Watched(Generic[T]):
    """The requests of a client stream, with the first exception their iterator raised
    (a file that cannot be read, say): grpc shows it only as a failed call (blocking) or
    a cancelled one (asyncio), and the caller should see the exception itself."""

    def __init__(self, requests: Iterable[T]) -> None:
        self._requests = requests
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[T]:
        try:
            yield from self._requests
        except Exception as error:
            self.error = error
            raise


def result(reply: inference_pb2.ClassifyResponse) -> ClassificationResult:
    classes = tuple(ClassScore(c.label, c.index, c.score) for c in reply.classes)
    return ClassificationResult(reply.model, reply.version, classes)


def stream_outcome(
    reply: inference_pb2.ClassifyStreamResponse,
) -> ClassificationResult | ModelwireError:
    if reply.HasField("error"):
        return stream_error(reply.error)
    return result(reply.response)


def stream_error(error: inference_pb2.StreamError) -> ModelwireError:
    code = _CODES_BY_NUMBER.get(error.code, grpc.StatusCode.UNKNOWN)
    return error_for_status(code.name)(error.message, status=code.name)


def _texts(texts: str | Sequence[str]) -> list[str]:
    """A lone str is one text (not its characters)."""
    return [texts] if isinstance(texts, str) else list(texts)


def classify_text_request(
    texts: str | Sequence[str], model: str | None, version: int | None, top_k: int
) -> inference_pb2.ClassifyTextRequest:
    return inference_pb2.ClassifyTextRequest(
        model=model or "", version=version or 0, texts=_texts(texts), top_k=top_k
    )


def classify_text_stream_requests(
    batches: Iterable[str | Sequence[str]], model: str | None, version: int | None, top_k: int
) -> Iterator[inference_pb2.ClassifyTextStreamRequest]:
    """One stream message per batch of texts, ids "0", "1", ... in order, read lazily."""
    for index, texts in enumerate(batches):
        yield inference_pb2.ClassifyTextStreamRequest(
            id=str(index), request=classify_text_request(texts, model, version, top_k)
        )


def text_results(reply: inference_pb2.ClassifyTextResponse) -> list[ClassificationResult]:
    return [
        ClassificationResult(
            reply.model,
            reply.version,
            tuple(ClassScore(c.label, c.index, c.score) for c in text.classes),
        )
        for text in reply.results
    ]


def text_stream_outcome(
    reply: inference_pb2.ClassifyTextStreamResponse,
) -> list[ClassificationResult] | ModelwireError:
    if reply.HasField("error"):
        return stream_error(reply.error)
    return text_results(reply.response)


@dataclass(frozen=True)
class EmbeddingResult:
    """One vector per text, in order: `vectors` is FP32 [texts, width]; `tokens` the
    tokens the model read of each text."""

    model: str
    version: int
    vectors: np.ndarray
    tokens: tuple[int, ...]

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


def embed_request(
    texts: str | Sequence[str], model: str | None, version: int | None
) -> inference_pb2.EmbedRequest:
    return inference_pb2.EmbedRequest(model=model or "", version=version or 0, texts=_texts(texts))


def embed_stream_requests(
    batches: Iterable[str | Sequence[str]], model: str | None, version: int | None
) -> Iterator[inference_pb2.EmbedStreamRequest]:
    """One stream message per batch of texts, ids "0", "1", ... in order, read lazily."""
    for index, texts in enumerate(batches):
        yield inference_pb2.EmbedStreamRequest(
            id=str(index), request=embed_request(texts, model, version)
        )


def embedding_result(reply: inference_pb2.EmbedResponse) -> EmbeddingResult:
    vectors = np.array([e.values for e in reply.embeddings], dtype=np.float32)
    tokens = tuple(e.tokens for e in reply.embeddings)
    return EmbeddingResult(reply.model, reply.version, vectors, tokens)


def embed_stream_outcome(
    reply: inference_pb2.EmbedStreamResponse,
) -> EmbeddingResult | ModelwireError:
    if reply.HasField("error"):
        return stream_error(reply.error)
    return embedding_result(reply.response)


def translate(error: grpc.RpcError, target: str) -> ModelwireError:
    """Turn a failed call into the modelwire error for its status code."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        details = f"cannot reach a modelwire server at {target}: is it running?"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer from {target} before the deadline"
    return error_for_status(code.name)(details, status=code.name)


def infer_request(
    model: str, inputs: Tensors, version: int | None, outputs: Iterable[str] | None
) -> oip_pb2.ModelInferRequest:
    """An Open Inference Protocol request carrying the tensors raw."""
    request = oip_pb2.ModelInferRequest(
        model_name=model, model_version=str(version) if version is not None else ""
    )
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind == "U":
            array = array.astype(object)
        request.inputs.add(name=name, datatype=datatype_of(array).name, shape=array.shape)
        request.raw_input_contents.append(to_raw(array))
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def infer_outputs(reply: oip_pb2.ModelInferResponse) -> Tensors:
    """A reply's output tensors as numpy arrays of their datatypes."""
    outputs = {}
    for tensor, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        shape = list(tensor.shape)
        if tensor.datatype == "BYTES":
            elements = unpack_bytes(raw, int(np.prod(shape, dtype=np.int64)), tensor.name)
            array = np.empty(len(elements), dtype=object)
            array[:] = elements
            outputs[tensor.name] = array.reshape(shape)
        else:
            dtype = DATATYPES[tensor.datatype].dtype
            outputs[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return outputs


def create_dataset_request(
    name: str, description: str, kind: str
) -> datasets_pb2.CreateDatasetRequest:
    if kind not in DATASET_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(DATASET_KINDS)}", field="kind")
    return datasets_pb2.CreateDatasetRequest(
        name=name, description=description, kind=DATASET_KINDS[kind]
    )


def health_status(reply: health_pb2.HealthCheckResponse) -> str:
    """SERVING, NOT_SERVING or SERVICE_UNKNOWN."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
