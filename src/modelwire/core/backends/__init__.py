"""What runs a batch: named input tensors in, named output tensors out.

A backend is blocking and thread-safe; the batcher calls `run` in the engine's thread
pool. With a batch axis (`max_batch_size` > 0) every tensor's first axis is the batch
and the specs give one item's shape; without one (`max_batch_size` = 0) each request
runs alone with its shape as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelwire.core.tensors import NamedTensors, TensorSpec

__all__ = ["Backend", "BackendInfo"]


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend takes and gives, and where it runs."""

    platform: str  # the Open Inference Protocol's platform name
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    device: str  # where it runs, as ONNX Runtime names it: "CPUExecutionProvider", ...

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0


class Backend(Protocol):
    @property
    def info(self) -> BackendInfo: ...

    def run(self, inputs: NamedTensors) -> NamedTensors:
        """Every output for one batch of inputs (or one unbatched request)."""
        ...

    def close(self) -> None: ...
