"""The Python SDK: `Client` (blocking) and `AsyncClient` (asyncio).

    from modelwire.client import Client
    with Client("localhost:50051") as client:
        print(client.classify("digit.png"))

Errors arrive as modelwire.errors exceptions (InvalidInput, Unavailable, ...), each with
the server's message and `.status`, the gRPC status name.
"""

from modelwire.client._async import AsyncClient
from modelwire.client._common import (
    ClassificationResult,
    ClassScore,
    EmbeddingResult,
    Example,
    ImageInput,
    Tensors,
    TextExample,
)
from modelwire.client._speech import (
    END_UTTERANCE,
    AudioInput,
    Chunk,
    TranscriptResult,
    WordTiming,
)
from modelwire.client._sync import Client
from modelwire.client._vision import DetectedObject, Detections, TextLine, TextReading

__all__ = [
    "END_UTTERANCE",
    "AsyncClient",
    "AudioInput",
    "Chunk",
    "ClassScore",
    "ClassificationResult",
    "Client",
    "DetectedObject",
    "Detections",
    "EmbeddingResult",
    "Example",
    "ImageInput",
    "Tensors",
    "TextExample",
    "TextLine",
    "TextReading",
    "TranscriptResult",
    "WordTiming",
]
