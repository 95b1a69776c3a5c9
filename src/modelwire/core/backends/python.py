"""Python models: a `model.py` in the model (or version) folder, run inside the server.

The file defines one class with `load(folder)` and `predict(inputs) -> outputs`, both
dicts of numpy arrays keyed by tensor name, batched on the first axis as the model's
declared `[[inputs]]`/`[[outputs]]` say. It is repository code running with the
server's rights, so it runs only when the server was started with
`--allow-python-models`. `predict` is called in the engine's thread pool, one batch at a
time per instance; what it raises fails that batch alone.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import logging
import queue
import sys
from typing import Any, Protocol

import numpy as np

from modelwire.core.backends import BackendInfo
from modelwire.core.repository import ModelSource
from modelwire.core.tensors import DATATYPES, NamedTensors, TensorSpec, as_bytes_elements
from modelwire.errors import InvalidInput

__all__ = ["PLATFORM", "PythonBackend", "PythonModel"]

log = logging.getLogger(__name__)

PLATFORM = "python"

_loaded = itertools.count(1)


class PythonModel(Protocol):
    def load(self, folder: Any) -> None: ...

    def predict(self, inputs: NamedTensors) -> NamedTensors: ...


class PythonBackend:
    def __init__(self, source: ModelSource, *, allowed: bool) -> None:
        self.source = source
        self._where = where = f"{source.name}/{source.version}"
        if not allowed:
            raise InvalidInput(
                f"{where}: a Python model runs its model.py inside the server; start the "
                "server with --allow-python-models (MODELWIRE_ALLOW_PYTHON_MODELS=true) to "
                "serve it"
            )
        config = source.config
        self.info = BackendInfo(
            PLATFORM,
            tuple(_spec(t) for t in config.inputs),
            tuple(_spec(t) for t in config.outputs),
            config.batching.max_batch_size,
            "python",
        )
        model_class = self._find_class()
        self._instances: queue.SimpleQueue[PythonModel] = queue.SimpleQueue()
        for _ in range(config.instances):
            self._instances.put(self._start(model_class))

    def _find_class(self) -> type[PythonModel]:
        path = self.source.python_path
        name = f"modelwire_python_models.m{next(_loaded)}"
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickle look modules up here
            spec.loader.exec_module(module)
        except Exception as exc:
            log.exception("%s: model.py failed to import", self._where)
            raise InvalidInput(
                f"{self._where}: model.py failed to import ({type(exc).__name__}); the "
                "server log has the details"
            ) from None
        found = [
            value
            for value in vars(module).values()
            if inspect.isclass(value)
            and value.__module__ == name
            and callable(getattr(value, "predict", None))
            and callable(getattr(value, "load", None))
        ]
        if len(found) != 1:
            named = ", ".join(c.__name__ for c in found) or "none"
            raise InvalidInput(
                f"{self._where}: model.py must define exactly one class with load(folder) "
                f"and predict(inputs) methods; found {named}"
            )
        self.module = module
        model_class: type[PythonModel] = found[0]  # type: ignore[assignment]
        return model_class

    def _start(self, model_class: type[PythonModel]) -> PythonModel:
        try:
            model = model_class()
            model.load(self.source.folder)
        except Exception as exc:
            log.exception("%s: the Python model failed to load", self._where)
            raise InvalidInput(
                f"{self._where}: {model_class.__name__}.load failed ({type(exc).__name__}); "
                "the server log has the details"
            ) from None
        return model

    def run(self, inputs: NamedTensors) -> NamedTensors:
        # Writable copies where the request's buffer is read-only, so a model may
        # change its inputs in place whether or not its batch was stacked.
        given = {n: a if a.flags.writeable else a.copy() for n, a in inputs.items()}
        model = self._instances.get()
        try:
            answer = model.predict(given)
        finally:
            self._instances.put(model)
        if not isinstance(answer, dict):
            raise TypeError(f"{self._where}: predict returned {type(answer).__name__}, not a dict")
        outputs = {}
        for spec in self.info.outputs:
            if spec.name not in answer:
                raise KeyError(f"{self._where}: predict returned no output {spec.name!r}")
            value = np.asarray(answer[spec.name], dtype=DATATYPES[spec.datatype].dtype)
            outputs[spec.name] = as_bytes_elements(value) if spec.datatype == "BYTES" else value
        return outputs

    def close(self) -> None:
        while not self._instances.empty():
            self._instances.get()


def _spec(tensor: Any) -> TensorSpec:
    return TensorSpec(tensor.name, tensor.datatype, tuple(tensor.shape))
