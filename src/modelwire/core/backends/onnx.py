"""ONNX Runtime sessions: any ONNX model, on the execution provider model.toml asks for.

`OnnxBackend.run` is blocking and thread-safe (ONNX Runtime releases the GIL while it
computes). With `instances` > 1 it holds that many sessions, so that many batches run
at once without sharing a thread pool. The model's inputs and outputs are read from the
graph; `[[inputs]]`/`[[outputs]]` in model.toml may fix dynamic axes or pick outputs.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from modelwire.core.backends import BackendInfo
from modelwire.core.repository import ModelSource, RuntimeConfig, TensorConfig
from modelwire.core.tensors import NamedTensors, TensorSpec, as_bytes_elements
from modelwire.errors import InvalidInput

__all__ = ["PLATFORM", "OnnxBackend", "ProviderChoice", "choose_providers"]

log = logging.getLogger(__name__)

PLATFORM = "onnxruntime_onnx"

CPU = "CPUExecutionProvider"

#: ONNX Runtime's element types (as `NodeArg.type` names them) → protocol datatypes.
_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

#: `device = "auto"`: the first of these this ONNX Runtime build has, else the CPU.
_AUTO = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)

#: What to install for a provider this build lacks.
_INSTALL = {
    "CUDAExecutionProvider": "pip install 'modelwire[gpu]' (onnxruntime-gpu, in place of "
    "onnxruntime) and the CUDA and cuDNN libraries it names",
    "TensorrtExecutionProvider": "pip install 'modelwire[gpu]' (onnxruntime-gpu, in place "
    "of onnxruntime) and TensorRT",
    "OpenVINOExecutionProvider": "pip install onnxruntime-openvino in place of onnxruntime",
    "DmlExecutionProvider": "pip install onnxruntime-directml in place of onnxruntime (Windows)",
    "ROCMExecutionProvider": "install ONNX Runtime built for ROCm in place of onnxruntime",
}

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

Provider = str | tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ProviderChoice:
    """The providers a session is opened with, best first, and why it fell back (empty
    when it did not)."""

    providers: tuple[Provider, ...]
    fallback: str = ""
    #: Chosen by device = "auto", which settles for the CPU rather than fail.
    auto: bool = False

    @property
    def wanted(self) -> str:
        first = self.providers[0]
        return first if isinstance(first, str) else first[0]


def choose_providers(
    runtime: RuntimeConfig,
    default_device: str,
    available: Sequence[str],
    where: str,
) -> ProviderChoice:
    """The execution providers for a model's `[runtime]`, given the providers this ONNX
    Runtime build has. InvalidInput names a provider that is missing and how to get it,
    unless `fallback = "cpu"`."""
    if runtime.providers is not None:
        known = set(ort.get_all_providers())
        unknown = [p for p in runtime.providers if p not in known]
        if unknown:
            raise InvalidInput(
                f"{where}: [runtime] providers: {', '.join(map(repr, unknown))} is not an "
                f"ONNX Runtime execution provider (they are: {', '.join(sorted(known))})"
            )
        wanted: list[Provider] = list(runtime.providers)
    else:
        device = runtime.device or default_device
        if device == "cpu":
            return ProviderChoice((CPU,))
        if device == "auto":
            best = next((p for p in _AUTO if p in available), CPU)
            return ProviderChoice((best, CPU) if best != CPU else (CPU,), auto=True)
        _, _, index = device.partition(":")
        wanted = [("CUDAExecutionProvider", {"device_id": int(index or 0)})]
    names = [p if isinstance(p, str) else p[0] for p in wanted]
    missing = [name for name in names if name not in available]
    if missing:
        reason = (
            f"{missing[0]} is not in this ONNX Runtime build (onnxruntime "
            f"{ort.__version__}, providers: {', '.join(available)})"
        )
        if runtime.fallback != "cpu":
            hint = _INSTALL.get(missing[0], f"install an ONNX Runtime build with {missing[0]}")
            raise InvalidInput(
                f'{where}: {reason}: {hint}; or set [runtime] fallback = "cpu" to serve on CPU'
            )
        return ProviderChoice((CPU,), fallback=reason)
    if CPU not in names:
        wanted.append(CPU)  # for the operators the accelerator lacks
    return ProviderChoice(tuple(wanted))


class OnnxBackend:
    def __init__(self, source: ModelSource, *, default_device: str = "cpu") -> None:
        self.source = source
        self._where = f"{source.name}/{source.version}"
        config = source.config
        self.choice = choose_providers(
            config.runtime, default_device, ort.get_available_providers(), self._where
        )
        self._sessions: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        first = self._open()
        in_use = first.get_providers()[0]
        if self.choice.wanted != in_use and not self.choice.fallback:
            # The provider is in the build but could not start (no GPU, missing CUDA
            # libraries): ONNX Runtime went on with the CPU and only warned.
            reason = (
                f"{self.choice.wanted} could not start here (ONNX Runtime fell back to {in_use})"
            )
            if config.runtime.fallback != "cpu" and not self.choice.auto:
                raise InvalidInput(
                    f"{self._where}: {reason}; check the GPU and its drivers, or set "
                    '[runtime] fallback = "cpu" to serve on CPU'
                )
            self.choice = ProviderChoice((CPU,), fallback=reason)
        if self.choice.fallback:
            log.warning("model %s serves on CPU: %s", self._where, self.choice.fallback)
        self.info = self._describe(first, in_use)
        self._output_names = [spec.name for spec in self.info.outputs]
        self._text_outputs = {s.name for s in self.info.outputs if s.datatype == "BYTES"}
        self._sessions.put(first)
        for _ in range(config.instances - 1):
            self._sessions.put(self._open())

    def _open(self) -> ort.InferenceSession:
        config = self.source.config
        runtime = config.runtime
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = runtime.inter_op_threads
        options.execution_mode = (
            ort.ExecutionMode.ORT_SEQUENTIAL
            if runtime.inter_op_threads == 1
            else ort.ExecutionMode.ORT_PARALLEL
        )
        options.graph_optimization_level = _OPTIMIZATION[runtime.graph_optimization_level]
        options.enable_cpu_mem_arena = runtime.memory_arena
        try:
            return ort.InferenceSession(
                str(self.source.onnx_path), options, providers=list(self.choice.providers)
            )
        except Exception as exc:  # ORT raises its own types for missing/corrupt files
            raise InvalidInput(
                f"{self._where}/model.onnx could not be loaded "
                f"({type(exc).__name__}): is it an ONNX file?"
            ) from None

    def _describe(self, session: ort.InferenceSession, device: str) -> BackendInfo:
        config = self.source.config
        graph_inputs = session.get_inputs()
        if not graph_inputs:
            raise InvalidInput(f"{self._where}: the model has no inputs")
        batch = config.batching.max_batch_size
        has_axis = all(len(i.shape) >= 1 and not _fixed(i.shape[0]) for i in graph_inputs)
        if not config.batch_size_given and not has_axis:
            batch = 0
            log.info("model %s has no batch axis: each request runs alone", self._where)
        if batch > 0:
            # A fixed first axis of 1 serves batches of one; any other fixed size would
            # fail every batch that is not exactly that size.
            served = [o for o in session.get_outputs() if o.type in _DATATYPES]
            for tensor in (*graph_inputs, *served):
                first = tensor.shape[0] if tensor.shape else None
                if not tensor.shape or (_fixed(first) and (first, batch) != (1, 1)):
                    raise InvalidInput(
                        f"{self._where}: {tensor.name!r} has shape "
                        f"{_shape(tensor.shape)}, without a dynamic batch axis: set "
                        "batching.max_batch_size = 0 (no batch axis) or export with one"
                    )
        inputs = _specs(graph_inputs, config.inputs, batch > 0, "input", self._where, True)
        outputs = _specs(session.get_outputs(), config.outputs, batch > 0, "output", self._where)
        if not outputs:
            raise InvalidInput(f"{self._where}: the model has no output of a tensor type")
        return BackendInfo(PLATFORM, inputs, outputs, batch, device)

    def run(self, inputs: NamedTensors) -> NamedTensors:
        session = self._sessions.get()
        try:
            results = session.run(self._output_names, inputs)
        except Exception as error:
            # ONNX Runtime's own words name its source paths: they stay in the log.
            log.warning("model %s could not run a batch: %s", self._where, error)
            raise InvalidInput(
                f"model {self._where} could not run on this input (ONNX Runtime refused "
                "it): check that the inputs' shapes and values fit together as the model "
                "needs",
                field="inputs",
            ) from None
        finally:
            self._sessions.put(session)
        outputs = {}
        for name, value in zip(self._output_names, results, strict=True):
            array = np.asarray(value)
            if name in self._text_outputs:
                array = as_bytes_elements(array)
            outputs[name] = array
        return outputs

    def close(self) -> None:
        while not self._sessions.empty():
            self._sessions.get()


def _fixed(dim: object) -> bool:
    return isinstance(dim, int) and dim >= 0


def _shape(dims: Sequence[object]) -> list[int]:
    return [dim if _fixed(dim) else -1 for dim in dims]  # type: ignore[misc]


def _specs(
    graph: Sequence[Any],
    declared: Sequence[TensorConfig],
    batched: bool,
    kind: str,
    where: str,
    every: bool = False,
) -> tuple[TensorSpec, ...]:
    """The model's tensors of one kind: from the graph, as model.toml restricts them.
    Inputs (`every`) must all be served; declared outputs pick which are."""
    found = {}
    for tensor in graph:
        datatype = _DATATYPES.get(tensor.type)
        shape = _shape(tensor.shape)
        if batched:
            shape = shape[1:]
        if datatype is None:
            if every:
                raise InvalidInput(
                    f"{where}: {kind} {tensor.name!r} is {tensor.type}, which the Open "
                    "Inference Protocol cannot carry"
                )
            log.warning("%s: output %r (%s) is not served", where, tensor.name, tensor.type)
            continue
        found[tensor.name] = TensorSpec(tensor.name, datatype, tuple(shape))
    for entry in declared:
        spec = found.get(entry.name)
        if spec is None:
            raise InvalidInput(
                f"{where}: model.toml declares {kind} {entry.name!r}; the model's {kind}s "
                f"are {', '.join(found) or 'none'}"
            )
        found[entry.name] = _restrict(spec, entry, kind, where)
    if declared and not every:
        return tuple(found[entry.name] for entry in declared)
    return tuple(found.values())


def _restrict(spec: TensorSpec, entry: TensorConfig, kind: str, where: str) -> TensorSpec:
    if entry.datatype is not None and entry.datatype != spec.datatype:
        raise InvalidInput(
            f"{where}: model.toml says {kind} {spec.name!r} is {entry.datatype}; the model "
            f"takes {spec.datatype}"
        )
    if entry.shape is None:
        return spec
    if len(entry.shape) != len(spec.shape) or any(
        graph != -1 and given not in (-1, graph)
        for graph, given in zip(spec.shape, entry.shape, strict=True)
    ):
        raise InvalidInput(
            f"{where}: model.toml gives {kind} {spec.name!r} the shape {list(entry.shape)}; "
            f"the model's is {list(spec.shape)} (-1: any length)"
        )
    shape = tuple(g if g != -1 else d for g, d in zip(spec.shape, entry.shape, strict=True))
    return TensorSpec(spec.name, spec.datatype, shape)
