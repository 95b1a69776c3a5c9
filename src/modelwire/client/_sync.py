from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2

from modelwire.api.oip import grpc_predict_v2_pb2 as oip_pb2
from modelwire.api.v1 import (
    datasets_pb2,
    models_pb2,
    training_pb2,
)
from modelwire.client._base import ClientBase
from modelwire.client._channel import Connection
from modelwire.client._common import (
    ClassificationResult,
    EmbeddingResult,
    Example,
    ImageInput,
    Tensors,
    TextExample,
    Watched,
    classify_request,
    classify_text_request,
    classify_text_stream_requests,
    create_dataset_request,
    embed_request,
    embed_stream_outcome,
    embed_stream_requests,
    embedding_result,
    health_status,
    infer_outputs,
    infer_request,
    result,
    stream_outcome,
    stream_requests,
    text_results,
    text_stream_outcome,
    translate,
    upload_requests,
)
from modelwire.client._speech import (
    AudioInput,
    Chunk,
    TranscriptResult,
    transcribe_request,
    transcript_result,
)
from modelwire.client._speech import (
    stream_requests as speech_stream_requests,
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

R = TypeVar("R")


class Client(ClientBase):
    """A blocking client for one modelwire server. Thread-safe; close it when done."""

    _channel: grpc.Channel

    def _open(self, connection: Connection) -> grpc.Channel:
        self._channel = connection.channel()
        return self._channel

    def classify(
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
            reply = self._inference.Classify(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return result(reply)

    def infer(
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
            reply = self._oip.ModelInfer(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return infer_outputs(reply)

    def classify_text(
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
            reply = self._inference.ClassifyText(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return text_results(reply)

    def classify_text_stream(
        self,
        batches: Iterable[str | Sequence[str]],
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
    ) -> Iterator[list[ClassificationResult] | ModelwireError]:
        """Classify many batches of texts over one stream; yields one outcome per batch,
        in order: a result per text, or the error for that batch alone."""
        requests = classify_text_stream_requests(batches, model, version, top_k)
        try:
            for reply in self._inference.ClassifyTextStream(requests):
                yield text_stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def transcribe(
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
            reply = self._speech.Transcribe(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return transcript_result(reply.model, reply.version, reply.transcript)

    def transcribe_stream(
        self,
        chunks: Iterable[Chunk],
        *,
        sample_rate: int,
        encoding: str = "s16le",
        channels: int = 1,
        model: str | None = None,
        version: int | None = None,
        grammar: str | None = None,
        phrases: Sequence[str] | None = None,
    ) -> Iterator[TranscriptResult]:
        """Transcribe raw PCM chunks as they come (`encoding` "s16le" or "f32le",
        interleaved `channels`); `END_UTTERANCE` between chunks ends an utterance, and
        the end of `chunks` ends the last. Yields partial hypotheses as they change
        (`final` False) and each utterance's final transcript."""
        requests = speech_stream_requests(
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
            for reply in self._speech.TranscribeStream(requests):
                yield transcript_result(
                    reply.model, reply.version, reply.transcript, reply.final, reply.utterance
                )
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def read_text(
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
            reply = self._vision.ReadText(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return reading(reply)

    def read_text_stream(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
    ) -> Iterator[TextReading | ModelwireError]:
        """Read many pictures over one stream; one outcome per picture, in order: its
        text, or the error for that picture alone."""
        requests = read_text_stream_requests(images, model, version)
        try:
            for reply in self._vision.ReadTextStream(requests):
                yield reading_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def detect(
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
            reply = self._vision.Detect(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return detections(reply)

    def embed(
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
            reply = self._inference.Embed(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return embedding_result(reply)

    def embed_stream(
        self,
        batches: Iterable[str | Sequence[str]],
        *,
        model: str | None = None,
        version: int | None = None,
    ) -> Iterator[EmbeddingResult | ModelwireError]:
        """Embed many batches of texts over one stream; yields one outcome per batch, in
        order: its embeddings, or the error for that batch alone."""
        requests = embed_stream_requests(batches, model, version)
        try:
            for reply in self._inference.EmbedStream(requests):
                yield embed_stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def input_datatypes(self, model: str, *, version: int | None = None) -> dict[str, str]:
        """The model's inputs and their Open Inference Protocol datatypes, by name."""
        request = oip_pb2.ModelMetadataRequest(
            name=model, version=str(version) if version is not None else ""
        )
        try:
            reply = self._oip.ModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None
        return {tensor.name: tensor.datatype for tensor in reply.inputs}

    def classify_stream(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int = 1,
    ) -> Iterator[ClassificationResult | ModelwireError]:
        """Classify many images over one stream; yields one outcome per image, in order:
        a result, or the error for that image alone."""
        requests = stream_requests(images, model, version, top_k)
        try:
            for reply in self._inference.ClassifyStream(requests):
                yield stream_outcome(reply)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def list_models(self) -> list[models_pb2.Model]:
        reply: models_pb2.ListModelsResponse = self._call(
            self._models.ListModels, models_pb2.ListModelsRequest()
        )
        return list(reply.models)

    def get_model(self, name: str) -> models_pb2.Model:
        reply: models_pb2.GetModelResponse = self._call(
            self._models.GetModel, models_pb2.GetModelRequest(name=name)
        )
        return reply.model

    def load_model(self, name: str) -> models_pb2.Model:
        """Load (or re-read) a model from the server's repository; the reply says how
        it went (a model that failed to load is FAILED with its reason)."""
        reply: models_pb2.LoadModelResponse = self._call(
            self._models.LoadModel, models_pb2.LoadModelRequest(name=name)
        )
        return reply.model

    def unload_model(self, name: str) -> models_pb2.Model:
        reply: models_pb2.UnloadModelResponse = self._call(
            self._models.UnloadModel, models_pb2.UnloadModelRequest(name=name)
        )
        return reply.model

    def reload_model(self, name: str) -> models_pb2.Model:
        reply: models_pb2.ReloadModelResponse = self._call(
            self._models.ReloadModel, models_pb2.ReloadModelRequest(name=name)
        )
        return reply.model

    def create_dataset(
        self, name: str, description: str = "", *, kind: str = "image"
    ) -> datasets_pb2.Dataset:
        """A new empty dataset of `kind` "image" or "text"."""
        reply: datasets_pb2.CreateDatasetResponse = self._call(
            self._datasets.CreateDataset, create_dataset_request(name, description, kind)
        )
        return reply.dataset

    def list_datasets(self) -> list[datasets_pb2.Dataset]:
        reply: datasets_pb2.ListDatasetsResponse = self._call(
            self._datasets.ListDatasets, datasets_pb2.ListDatasetsRequest()
        )
        return list(reply.datasets)

    def get_dataset(self, name: str) -> datasets_pb2.Dataset:
        reply: datasets_pb2.GetDatasetResponse = self._call(
            self._datasets.GetDataset, datasets_pb2.GetDatasetRequest(name=name)
        )
        return reply.dataset

    def delete_dataset(self, name: str) -> None:
        self._call(self._datasets.DeleteDataset, datasets_pb2.DeleteDatasetRequest(name=name))

    def upload_examples(
        self,
        dataset: str,
        examples: Iterable[Example | TextExample],
        *,
        idempotency_key: str = "",
    ) -> datasets_pb2.UploadExamplesResponse:
        """Upload labelled images (or texts, to a text dataset) over one stream (no
        deadline: as long as it takes); the reply counts what was accepted, what the
        dataset held already, and each refused example with its reason. Sending the same
        upload again with the same `idempotency_key` (after a broken stream) answers as
        one upload would have."""
        requests = Watched(upload_requests(dataset, examples, idempotency_key))
        try:
            reply: datasets_pb2.UploadExamplesResponse = self._datasets.UploadExamples(
                iter(requests)
            )
        except grpc.RpcError as error:
            if requests.error is not None:
                raise requests.error from None
            raise translate(error, self.target) from None
        return reply

    def export_examples(self, dataset: str) -> Iterator[datasets_pb2.ExportExamplesResponse]:
        """Every example of a dataset: label, image bytes (or text) and SHA-256."""
        try:
            yield from self._datasets.ExportExamples(
                datasets_pb2.ExportExamplesRequest(dataset=dataset)
            )
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def start_training(self, config: training_pb2.TrainingConfig) -> training_pb2.TrainingJob:
        """Queue a training job; zero fields of `config` take the server's defaults."""
        reply: training_pb2.StartTrainingResponse = self._call(
            self._training.StartTraining, training_pb2.StartTrainingRequest(config=config)
        )
        return reply.job

    def watch_training(self, job_id: str) -> Iterator[training_pb2.TrainingJob]:
        """The job now, then again on every change, until it ends."""
        try:
            for reply in self._training.WatchTraining(training_pb2.WatchTrainingRequest(id=job_id)):
                yield reply.job
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def cancel_training(self, job_id: str) -> training_pb2.TrainingJob:
        reply: training_pb2.CancelTrainingResponse = self._call(
            self._training.CancelTraining, training_pb2.CancelTrainingRequest(id=job_id)
        )
        return reply.job

    def list_training_jobs(self) -> list[training_pb2.TrainingJob]:
        reply: training_pb2.ListTrainingJobsResponse = self._call(
            self._training.ListTrainingJobs, training_pb2.ListTrainingJobsRequest()
        )
        return list(reply.jobs)

    def get_training_job(self, job_id: str) -> training_pb2.TrainingJob:
        reply: training_pb2.GetTrainingJobResponse = self._call(
            self._training.GetTrainingJob, training_pb2.GetTrainingJobRequest(id=job_id)
        )
        return reply.job

    def health(self, service: str = "") -> str:
        """The standard health service's answer for `service` ("" = the server; a
        model name = that model): SERVING, NOT_SERVING or SERVICE_UNKNOWN."""
        reply: health_pb2.HealthCheckResponse = self._call(
            self._health.Check, health_pb2.HealthCheckRequest(service=service)
        )
        return health_status(reply)

    def _call(self, method: Callable[..., R], request: object) -> R:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate(error, self.target) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
