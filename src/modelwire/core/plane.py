"""One batch through a served version: task.encode → backend.run → task.finish → one
answer per item.

This is what a version's batcher runs in the engine's thread pool. An item that fails to
encode fails alone; an error in the backend fails the batch. Records the seconds spent
encoding ("decode") and in the backend ("inference").
"""

from __future__ import annotations

import time

from modelwire.core.backends import Backend
from modelwire.core.tasks import Item, Task
from modelwire.core.tensors import NamedTensors

__all__ = ["run_batch"]


def run_batch(
    task: Task, backend: Backend, items: list[Item], phases: dict[str, float]
) -> list[NamedTensors | BaseException]:
    started = time.perf_counter()
    encoded = task.encode(items)
    prepared = time.perf_counter()
    phases["decode"] = prepared - started
    results: list[NamedTensors | BaseException] = [
        encoded.errors.get(index, RuntimeError("no result")) for index in range(len(items))
    ]
    total = sum(encoded.rows)
    if not total:
        return results
    outputs = task.finish(backend.run(encoded.tensors))
    phases["inference"] = time.perf_counter() - prepared
    if not backend.info.batched:
        (index,) = (i for i, rows in enumerate(encoded.rows) if rows)
        results[index] = outputs
        return results
    for name, array in outputs.items():
        if array.ndim == 0 or len(array) != total:
            raise RuntimeError(
                f"the model returned {name!r} of shape {list(array.shape)} for {total} rows"
            )
    offset = 0
    for index, rows in enumerate(encoded.rows):
        if rows:
            results[index] = {name: a[offset : offset + rows] for name, a in outputs.items()}
            offset += rows
    return results
