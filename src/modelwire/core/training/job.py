"""A training job's record: its config, its state, its history, and its JSON.

QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelwire.core.training.spec import JobConfig

__all__ = ["FINISHED", "EpochRecord", "Job", "JobState"]


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    seconds: float


@dataclass
class Job:
    id: str
    config: JobConfig
    state: JobState = JobState.QUEUED
    reason: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    version: int = 0
    promoted: bool = False
    created: float = field(default_factory=time.time)
    started: float = 0.0
    ended: float = 0.0

    @property
    def epoch(self) -> int:
        return len(self.history)

    @property
    def progress(self) -> float:
        if self.state == JobState.SUCCEEDED:
            return 1.0
        return self.epoch / self.config.epochs

    @property
    def eta_s(self) -> float:
        if self.state != JobState.RUNNING or not self.history:
            return 0.0
        per_epoch = sum(e.seconds for e in self.history) / len(self.history)
        return per_epoch * (self.config.epochs - self.epoch)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def snapshot(self) -> Job:
        return dataclasses.replace(self, history=list(self.history))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw: dict[str, Any] = json.loads(text)
        raw["config"] = JobConfig(**raw["config"])
        raw["state"] = JobState(raw["state"])
        raw["history"] = [EpochRecord(**e) for e in raw["history"]]
        return cls(**raw)
