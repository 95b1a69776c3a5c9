from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType

import grpc

from modelwire.api.oip import grpc_predict_v2_pb2 as oip_pb2
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as oip_pb2_grpc
from modelwire.api.v1 import (
    inference_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    speech_pb2_grpc,
    vision_pb2_grpc,
)
from modelwire.client._channel import Connection, PemInput
from modelwire.client._common import (
    ClassificationResult,
    EmbeddingResult,
    ImageInput,
    Tensors,
    classify_request,
    classify_text_request,
    classify_text_stream_requests,
    embed_request,
    embed_stream_outcome,
    embed_stream_requests,
    embedding_result,
    infer_outputs,
    infer_request,
    result,
    stream_outcome,
    stream_requests,
    text_results,
    text_stream_outcome,
    translate,
)
from modelwire.client._speech import (
    AudioInput,
    Chunk,
    TranscriptResult,
    stream_requests_async,
    transcribe_request,
    transcript_result,
)
from modelwire.client._vision import (
    Detections,
    TextReading,
    detect_request,
    detections,
    read_text_request,
    read_text_stream_requests,
    reading,
    reading_outcome,
)
from modelwire.errors import ModelwireError


class AsyncClient:
    """An asyncio client for one modelwire server; create and use it inside a running loop."""

    def __init__(
        self,
        target: str | Sequence[str] = "localhost:50051",
        *,
        timeout: float | None = 30.0,
        ca: PemInput | None = None,
        cert: PemInput | None = None,
        key: PemInput | None = None,
        token: str | None = None,
        tls: bool = False,
        balance: bool | None = None,
        connections: int = 1,
    ) -> None:
        """`target` is one HOST:PORT, or several addresses (a list, or comma-separated):
        then calls are balanced round-robin over the healthy ones, and calls safe to
        repeat are retried elsewhere when one fails; `balance=True` does the same for a
        DNS name that resolves to many replicas.
        `ca` (trusted roots; None: the system's), `cert` and `key` (a client
        certificate, for mutual TLS) are PEM files or bytes, and any of them turns TLS
        on, as does `tls`; `token` is sent as `authorization: Bearer <token>`.
        `connections` > 1 spreads the calls over that many connections (per address),
        so one client reaches every worker of a server started with `--workers`."""
        self.target = target if isinstance(target, str) else ",".join(target)
        self.timeout = timeout
        connection = Connection(target, ca, cert, key, token, tls, balance, connections)
        self._channel = connection.aio_channel()
        self._inference = inference_pb2_grpc.InferenceServiceStub(self._channel)
        self._speech = speech_pb2_grpc.SpeechServiceStub(self._channel)
        self._vision = vision_pb2_grpc.VisionServiceStub(self._channel)
        self._oip = oip_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._models = models_pb2_grpc.ModelServiceStub(self._channel)

    async def classify(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
        timeout: float | None = None,
    ) -> ClassificationResult:
        """Classify an image file (path) or encoded image bytes; model None is the
        server's default model, version None the model's default version."""
        request = classify_request(image, model, version, top_k)
        try:
            reply = await self._inference.Classify(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return result(reply)

    async def infer(
        self,
        model: str,
        inputs: Tensors,
        *,
        version: int | None = None,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Tensors:
        """Run any model on named tensors (numpy arrays; a batch axis first when the
        model has one) over the Open Inference Protocol: its outputs by name, every one
        or those `outputs` names. BYTES tensors are object arrays of bytes."""
        request = infer_request(model, inputs, version, outputs)
        try:
            reply = await self._oip.ModelInfer(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return infer_outputs(reply)

    async def classify_text(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
        timeout: float | None = None,
    ) -> list[ClassificationResult]:
        """The ranked classes of one text or of several (one result per text, in order)
        by a text classifier."""
        request = classify_text_request(texts, model, version, top_k)
        try:
            reply = await self._inference.ClassifyText(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return text_results(reply)

    async def classify_text_stream(
        self,
        batches: Iterable[str | Sequence[str]],
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
    ) -> AsyncIterator[list[ClassificationResult] | ModelwireError]:
        """Classify many batches of texts over one stream; yields one outcome per batch,
        in order: a result per text, or the error for that batch alone."""
        requests = classify_text_stream_requests(batches, model, version, top_k)
        try:
            async for reply in self._inference.ClassifyTextStream(requests):
                yield text_stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    async def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = None,
        version: int | None = None,
        grammar: str | None = None,
        phrases: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> TranscriptResult:
        """The transcript of an audio file (bytes or a path: WAV, FLAC, OGG or MP3) by a
        speech-recognition model. `grammar` (JSGF) or `phrases` (each utterance is one
        of them) tell the model what to expect."""
        request = transcribe_request(audio, model, version, grammar, phrases)
        try:
            reply = await self._speech.Transcribe(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return transcript_result(reply.model, reply.version, reply.transcript)

    async def transcribe_stream(
        self,
        chunks: AsyncIterable[Chunk] | Iterable[Chunk],
        *,
        sample_rate: int,
        encoding: str = "s16le",
        channels: int = 1,
        model: str | None = None,
        version: int | None = None,
        grammar: str | None = None,
        phrases: Sequence[str] | None = None,
    ) -> AsyncIterator[TranscriptResult]:
        """Transcribe raw PCM chunks as they come (`encoding` "s16le" or "f32le",
        interleaved `channels`); `END_UTTERANCE` between chunks ends an utterance, and
        the end of `chunks` ends the last. Yields partial hypotheses as they change
        (`final` False) and each utterance's final transcript."""
        requests = stream_requests_async(
            chunks,
            sample_rate,
            encoding,
            channels,
            model,
            version,
            grammar,
            phrases,
        )
        try:
            async for reply in self._speech.TranscribeStream(requests):
                yield transcript_result(
                    reply.model, reply.version, reply.transcript, reply.final, reply.utterance
                )
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    async def read_text(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> TextReading:
        """The text lines of a picture (bytes or a path) read by an OCR pipeline, in
        reading order, each with its box and confidence."""
        request = read_text_request(image, model, version)
        try:
            reply = await self._vision.ReadText(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return reading(reply)

    async def read_text_stream(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
    ) -> AsyncIterator[TextReading | ModelwireError]:
        """Read many pictures over one stream; one outcome per picture, in order: its
        text, or the error for that picture alone."""
        requests = read_text_stream_requests(images, model, version)
        try:
            async for reply in self._vision.ReadTextStream(requests):
                yield reading_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    async def detect(
        self,
        image: ImageInput,
        *,
        model: str | None = None,
        version: int | None = None,
        score_threshold: float = 0.0,
        max_detections: int = 0,
        timeout: float | None = None,
    ) -> Detections:
        """The objects an object-detection model finds in a picture, best first."""
        request = detect_request(image, model, version, score_threshold, max_detections)
        try:
            reply = await self._vision.Detect(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return detections(reply)

    async def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> EmbeddingResult:
        """The embeddings of one text or of several (one vector per text, in order) by a
        text-embedding model; the server tokenises with the model's tokenizer."""
        request = embed_request(texts, model, version)
        try:
            reply = await self._inference.Embed(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return embedding_result(reply)

    async def embed_stream(
        self,
        batches: Iterable[str | Sequence[str]],
        *,
        model: str | None = None,
        version: int | None = None,
    ) -> AsyncIterator[EmbeddingResult | ModelwireError]:
        """Embed many batches of texts over one stream; yields one outcome per batch, in
        order: its embeddings, or the error for that batch alone."""
        requests = embed_stream_requests(batches, model, version)
        try:
            async for reply in self._inference.EmbedStream(requests):
                yield embed_stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    async def input_datatypes(self, model: str, *, version: int | None = None) -> dict[str, str]:
        """The model's inputs and their Open Inference Protocol datatypes, by name."""
        request = oip_pb2.ModelMetadataRequest(
            name=model, version=str(version) if version is not None else ""
        )
        try:
            reply = await self._oip.ModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return {tensor.name: tensor.datatype for tensor in reply.inputs}

    async def classify_stream(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
    ) -> AsyncIterator[ClassificationResult | ModelwireError]:
        """Classify many images over one stream; yields one outcome per image, in order:
        a result, or the error for that image alone."""
        requests = stream_requests(images, model, version, top_k)
        try:
            async for reply in self._inference.ClassifyStream(requests):
                yield stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    async def list_models(self) -> list[models_pb2.Model]:
        try:
            reply: models_pb2.ListModelsResponse = await self._models.ListModels(
                models_pb2.ListModelsRequest(), timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return list(reply.models)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
