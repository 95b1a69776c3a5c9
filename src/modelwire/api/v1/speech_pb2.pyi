from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_S16LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_F32LE: _ClassVar[AudioEncoding]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM_S16LE: AudioEncoding
AUDIO_ENCODING_PCM_F32LE: AudioEncoding

class SpeechContext(_message.Message):
    __slots__ = ("grammar", "phrases")
    GRAMMAR_FIELD_NUMBER: _ClassVar[int]
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    grammar: str
    phrases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, grammar: _Optional[str] = ..., phrases: _Optional[_Iterable[str]] = ...) -> None: ...

class TranscribeRequest(_message.Message):
    __slots__ = ("model", "version", "audio", "context")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    audio: bytes
    context: SpeechContext
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., audio: _Optional[bytes] = ..., context: _Optional[_Union[SpeechContext, _Mapping]] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("word", "start_s", "end_s", "confidence")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_s: float
    end_s: float
    confidence: float
    def __init__(self, word: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("text", "words", "duration_s")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    text: str
    words: _containers.RepeatedCompositeFieldContainer[Word]
    duration_s: float
    def __init__(self, text: _Optional[str] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., duration_s: _Optional[float] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("model", "version", "transcript")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    transcript: Transcript
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., transcript: _Optional[_Union[Transcript, _Mapping]] = ...) -> None: ...

class AudioFormat(_message.Message):
    __slots__ = ("sample_rate", "encoding", "channels")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    encoding: AudioEncoding
    channels: int
    def __init__(self, sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., channels: _Optional[int] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("model", "version", "format", "context")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    format: AudioFormat
    context: SpeechContext
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., format: _Optional[_Union[AudioFormat, _Mapping]] = ..., context: _Optional[_Union[SpeechContext, _Mapping]] = ...) -> None: ...

class TranscribeStreamRequest(_message.Message):
    __slots__ = ("config", "audio", "end_utterance")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    END_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    audio: bytes
    end_utterance: bool
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., end_utterance: _Optional[bool] = ...) -> None: ...

class TranscribeStreamResponse(_message.Message):
    __slots__ = ("utterance", "final", "transcript", "model", "version")
    UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    utterance: int
    final: bool
    transcript: Transcript
    model: str
    version: int
    def __init__(self, utterance: _Optional[int] = ..., final: _Optional[bool] = ..., transcript: _Optional[_Union[Transcript, _Mapping]] = ..., model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...
