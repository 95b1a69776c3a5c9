"""One batch through a served version: task.encode → backend.run → task.finish → one
answer per item.

This is what a version's batcher runs in the engine's thread pool. An item that fails to
encode fails alone; when the backend fails on a batch of several items, each runs again
alone, so only the ones it fails on get its error. Records the seconds spent encoding
("decode") and in the backend ("inference").
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
    batched = backend.info.batched
    try:
        outputs = task.finish(backend.run(encoded.tensors), encoded.tensors)
    except Exception:
        if not batched or sum(1 for rows in encoded.rows if rows) < 2:
            raise
        return _one_by_one(task, backend, encoded.tensors, encoded.rows, results)
    finally:
        phases["inference"] = time.perf_counter() - prepared
    if not batched:
        (index,) = (i for i, rows in enumerate(encoded.rows) if rows)
        results[index] = outputs
        return results
    _check_rows(outputs, total)
    offset = 0
    for index, rows in enumerate(encoded.rows):
        if rows:
            results[index] = {name: a[offset : offset + rows] for name, a in outputs.items()}
            offset += rows
    return results


def _one_by_one(
    task: Task,
    backend: Backend,
    tensors: NamedTensors,
    rows: list[int],
    results: list[NamedTensors | BaseException],
) -> list[NamedTensors | BaseException]:
    """Each item's rows through the backend alone: its outputs, or its own error."""
    offset = 0
    for index, count in enumerate(rows):
        if not count:
            continue
        own = {name: array[offset : offset + count] for name, array in tensors.items()}
        offset += count
        try:
            outputs = task.finish(backend.run(own), own)
            _check_rows(outputs, count)
            results[index] = outputs
        except Exception as error:
            results[index] = error
    return results


def _check_rows(outputs: NamedTensors, total: int) -> None:
    for name, array in outputs.items():
        if array.ndim == 0 or len(array) != total:
            raise RuntimeError(
                f"the model returned {name!r} of shape {list(array.shape)} for {total} rows"
            )
