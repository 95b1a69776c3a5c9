"""Core results and states ↔ modelwire.api.v1 messages."""

from __future__ import annotations

from modelwire.api.v1 import inference_pb2, models_pb2
from modelwire.core.inference import Classification, Embeddings
from modelwire.core.models import ModelState, ModelStatus, VersionState

__all__ = ["classify_response", "classify_text_response", "embed_response", "model_message"]

_MODEL_STATES = {
    ModelState.READY: models_pb2.MODEL_STATE_READY,
    ModelState.LOADING: models_pb2.MODEL_STATE_LOADING,
    ModelState.UNAVAILABLE: models_pb2.MODEL_STATE_UNAVAILABLE,
    ModelState.FAILED: models_pb2.MODEL_STATE_FAILED,
}
_VERSION_STATES = {
    VersionState.READY: models_pb2.VERSION_STATE_READY,
    VersionState.LOADING: models_pb2.VERSION_STATE_LOADING,
    VersionState.UNLOADING: models_pb2.VERSION_STATE_UNLOADING,
    VersionState.FAILED: models_pb2.VERSION_STATE_FAILED,
}


def classify_response(result: Classification) -> inference_pb2.ClassifyResponse:
    return inference_pb2.ClassifyResponse(
        model=result.model, version=result.version, classes=_scores(result)
    )


def classify_text_response(results: list[Classification]) -> inference_pb2.ClassifyTextResponse:
    first = results[0]  # one per text, at least one
    return inference_pb2.ClassifyTextResponse(
        model=first.model,
        version=first.version,
        results=[inference_pb2.TextClasses(classes=_scores(result)) for result in results],
    )


def _scores(result: Classification) -> list[inference_pb2.ClassScore]:
    return [
        inference_pb2.ClassScore(label=c.label, index=c.index, score=c.score)
        for c in result.classes
    ]


def embed_response(result: Embeddings) -> inference_pb2.EmbedResponse:
    response = inference_pb2.EmbedResponse(
        model=result.model, version=result.version, total_tokens=int(result.tokens.sum())
    )
    for vector, tokens in zip(result.vectors.tolist(), result.tokens.tolist(), strict=True):
        response.embeddings.add(values=vector, tokens=tokens)
    return response


def model_message(status: ModelStatus, default_version: int | None) -> models_pb2.Model:
    message = models_pb2.Model(
        name=status.name,
        state=_MODEL_STATES[status.state],
        reason=status.reason,
        is_default=status.is_default,
        default_version=default_version or 0,
        versions=[
            models_pb2.ModelVersion(
                version=v.version,
                state=_VERSION_STATES[v.state],
                reason=v.reason,
                device=v.device,
            )
            for v in status.versions
        ],
    )
    folder = status.folder
    if folder is None:
        return message
    config = folder.config
    spec = config.input
    message.task = config.task
    message.description = config.description
    message.labels.extend(folder.labels)
    message.instances = config.instances
    message.threads_per_instance = config.threads
    if spec is not None:
        message.input.CopyFrom(
            models_pb2.InputSpec(
                name=spec.name or "",
                width=spec.width,
                height=spec.height,
                channels=spec.channels,
                layout=spec.layout,
                color_order=spec.color_order,
                resize=spec.resize,
                scale=spec.scale,
                mean=spec.mean,
                std=spec.std,
            )
        )
    batching = config.batching
    message.batching.CopyFrom(
        models_pb2.BatchingConfig(
            max_batch_size=batching.max_batch_size,
            max_queue_delay_ms=batching.max_queue_delay_ms,
            max_queue_size=batching.max_queue_size,
        )
    )
    return message
