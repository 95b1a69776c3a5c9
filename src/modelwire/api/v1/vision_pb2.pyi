from modelwire.api.v1 import inference_pb2 as _inference_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("model", "version", "image", "score_threshold", "max_detections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    image: bytes
    score_threshold: float
    max_detections: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., image: _Optional[bytes] = ..., score_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ...) -> None: ...

class DetectedObject(_message.Message):
    __slots__ = ("label", "score", "box")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    box: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., box: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("model", "version", "objects")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    objects: _containers.RepeatedCompositeFieldContainer[DetectedObject]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[DetectedObject, _Mapping]]] = ...) -> None: ...

class ReadTextRequest(_message.Message):
    __slots__ = ("model", "version", "image")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    image: bytes
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., image: _Optional[bytes] = ...) -> None: ...

class TextLine(_message.Message):
    __slots__ = ("text", "confidence", "box")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    text: str
    confidence: float
    box: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, text: _Optional[str] = ..., confidence: _Optional[float] = ..., box: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class ReadTextResponse(_message.Message):
    __slots__ = ("model", "version", "lines")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    lines: _containers.RepeatedCompositeFieldContainer[TextLine]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[TextLine, _Mapping]]] = ...) -> None: ...

class ReadTextStreamRequest(_message.Message):
    __slots__ = ("id", "request")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    request: ReadTextRequest
    def __init__(self, id: _Optional[str] = ..., request: _Optional[_Union[ReadTextRequest, _Mapping]] = ...) -> None: ...

class ReadTextStreamResponse(_message.Message):
    __slots__ = ("id", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    response: ReadTextResponse
    error: _inference_pb2.StreamError
    def __init__(self, id: _Optional[str] = ..., response: _Optional[_Union[ReadTextResponse, _Mapping]] = ..., error: _Optional[_Union[_inference_pb2.StreamError, _Mapping]] = ...) -> None: ...
