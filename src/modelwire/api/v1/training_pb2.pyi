import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Architecture(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARCHITECTURE_UNSPECIFIED: _ClassVar[Architecture]
    ARCHITECTURE_DIGITS_CNN: _ClassVar[Architecture]
    ARCHITECTURE_SMALL_RESNET: _ClassVar[Architecture]
    ARCHITECTURE_TEXT_LINEAR: _ClassVar[Architecture]
    ARCHITECTURE_TEXT_MLP: _ClassVar[Architecture]

class PromotePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMOTE_POLICY_UNSPECIFIED: _ClassVar[PromotePolicy]
    PROMOTE_POLICY_IF_BETTER: _ClassVar[PromotePolicy]
    PROMOTE_POLICY_ALWAYS: _ClassVar[PromotePolicy]
    PROMOTE_POLICY_NEVER: _ClassVar[PromotePolicy]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
ARCHITECTURE_UNSPECIFIED: Architecture
ARCHITECTURE_DIGITS_CNN: Architecture
ARCHITECTURE_SMALL_RESNET: Architecture
ARCHITECTURE_TEXT_LINEAR: Architecture
ARCHITECTURE_TEXT_MLP: Architecture
PROMOTE_POLICY_UNSPECIFIED: PromotePolicy
PROMOTE_POLICY_IF_BETTER: PromotePolicy
PROMOTE_POLICY_ALWAYS: PromotePolicy
PROMOTE_POLICY_NEVER: PromotePolicy
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class TrainingConfig(_message.Message):
    __slots__ = ("dataset", "model", "architecture", "input_width", "input_height", "epochs", "batch_size", "learning_rate", "validation_fraction", "seed", "promote", "workers", "embedding_model")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    model: str
    architecture: Architecture
    input_width: int
    input_height: int
    epochs: int
    batch_size: int
    learning_rate: float
    validation_fraction: float
    seed: int
    promote: PromotePolicy
    workers: int
    embedding_model: str
    def __init__(self, dataset: _Optional[str] = ..., model: _Optional[str] = ..., architecture: _Optional[_Union[Architecture, str]] = ..., input_width: _Optional[int] = ..., input_height: _Optional[int] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., validation_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., promote: _Optional[_Union[PromotePolicy, str]] = ..., workers: _Optional[int] = ..., embedding_model: _Optional[str] = ...) -> None: ...

class EpochMetrics(_message.Message):
    __slots__ = ("epoch", "train_loss", "validation_loss", "validation_accuracy")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    def __init__(self, epoch: _Optional[int] = ..., train_loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("id", "config", "state", "reason", "epoch", "progress", "eta_seconds", "history", "version", "promoted", "create_time", "start_time", "end_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    config: TrainingConfig
    state: JobState
    reason: str
    epoch: int
    progress: float
    eta_seconds: float
    history: _containers.RepeatedCompositeFieldContainer[EpochMetrics]
    version: int
    promoted: bool
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., config: _Optional[_Union[TrainingConfig, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., epoch: _Optional[int] = ..., progress: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., history: _Optional[_Iterable[_Union[EpochMetrics, _Mapping]]] = ..., version: _Optional[int] = ..., promoted: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: TrainingConfig
    def __init__(self, config: _Optional[_Union[TrainingConfig, _Mapping]] = ...) -> None: ...

class StartTrainingResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class WatchTrainingRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchTrainingResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class CancelTrainingRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelTrainingResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class ListTrainingJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTrainingJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...
