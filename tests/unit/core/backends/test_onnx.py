"""Execution providers, chosen and checked on CPU: what a model asks for, what this ONNX
Runtime build has, the failure that names the missing provider and how to install it,
and the CPU fallback that says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelwire.core.backends.onnx import CPU, OnnxBackend, choose_providers
from modelwire.core.inference import InferenceEngine
from modelwire.core.repository import RuntimeConfig, read_model_folder
from modelwire.errors import InvalidInput
from tests.images import digit_bytes
from tests.models import add_model

CUDA = "CUDAExecutionProvider"
CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cpu_and_auto_on_a_cpu_build() -> None:
    assert choose_providers(RuntimeConfig(), "cpu", CPU_ONLY, "m/1").providers == (CPU,)
    auto = choose_providers(RuntimeConfig(device="auto"), "cpu", CPU_ONLY, "m/1")
    assert auto.providers == (CPU,)
    assert not auto.fallback
    best = choose_providers(RuntimeConfig(device="auto"), "cpu", WITH_CUDA, "m/1")
    assert best.providers == (CUDA, CPU)


def test_cuda_with_a_device_number_keeps_the_cpu_for_the_rest() -> None:
    choice = choose_providers(RuntimeConfig(device="cuda:1"), "cpu", WITH_CUDA, "m/1")
    assert choice.providers == ((CUDA, {"device_id": 1}), CPU)
    assert choice.wanted == CUDA
    # serve --device is the default; model.toml wins.
    assert choose_providers(RuntimeConfig(), "cuda", WITH_CUDA, "m/1").wanted == CUDA
    assert choose_providers(RuntimeConfig(device="cpu"), "cuda", WITH_CUDA, "m/1").wanted == CPU


def test_a_missing_provider_names_itself_and_how_to_install_it() -> None:
    with pytest.raises(InvalidInput) as caught:
        choose_providers(RuntimeConfig(device="cuda"), "cpu", CPU_ONLY, "digits/1")
    message = caught.value.message
    assert "digits/1: CUDAExecutionProvider is not in this ONNX Runtime build" in message
    assert "modelwire[gpu]" in message
    assert 'fallback = "cpu"' in message
    with pytest.raises(InvalidInput, match="onnxruntime-openvino"):
        choose_providers(
            RuntimeConfig(providers=("OpenVINOExecutionProvider",)), "cpu", CPU_ONLY, "m/1"
        )
    with pytest.raises(InvalidInput, match="TensorRT"):
        choose_providers(
            RuntimeConfig(providers=("TensorrtExecutionProvider", CUDA)), "cpu", CPU_ONLY, "m/1"
        )
    with pytest.raises(InvalidInput, match="'CUDAProvider' is not an ONNX Runtime"):
        choose_providers(RuntimeConfig(providers=("CUDAProvider",)), "cpu", CPU_ONLY, "m/1")


def test_the_cpu_fallback_says_why() -> None:
    choice = choose_providers(RuntimeConfig(device="cuda", fallback="cpu"), "cpu", CPU_ONLY, "m/1")
    assert choice.providers == (CPU,)
    assert "CUDAExecutionProvider is not in this ONNX Runtime build" in choice.fallback


def test_runtime_table_is_validated() -> None:
    with pytest.raises(ValueError, match="device or providers, not both"):
        RuntimeConfig(device="cuda", providers=(CUDA,))
    with pytest.raises(ValueError, match='device must be "cpu"'):
        RuntimeConfig(device="gpu")


async def test_a_model_asking_for_cuda_fails_here_or_falls_back(tmp_path: Path) -> None:
    add_model(tmp_path, "on-gpu", tables='[runtime]\ndevice = "cuda"\n')
    add_model(tmp_path, "gpu-or-cpu", tables='[runtime]\ndevice = "cuda"\nfallback = "cpu"\n')
    add_model(
        tmp_path,
        "tuned",
        tables='[runtime]\ngraph_optimization_level = "disable"\ninter_op_threads = 2\n'
        "memory_arena = false\n",
    )
    engine = await InferenceEngine.start([tmp_path], threads=2)
    try:
        failed = engine.models.status("on-gpu")
        assert failed.state == "FAILED"
        assert "CUDAExecutionProvider is not in this ONNX Runtime build" in failed.reason
        fallback = engine.models.status("gpu-or-cpu")
        assert fallback.state == "READY"
        assert fallback.versions[0].device.startswith("CPUExecutionProvider (fallback: ")
        assert (await engine.classify(digit_bytes(4), "gpu-or-cpu")).top.label == "4"
        tuned = engine.models.status("tuned")
        assert tuned.versions[0].device == "CPUExecutionProvider"
        assert (await engine.classify(digit_bytes(4), "tuned")).top.label == "4"
    finally:
        await engine.close()


async def test_serve_device_is_every_models_default(tmp_path: Path) -> None:
    add_model(tmp_path, "plain")
    add_model(tmp_path, "pinned", tables='[runtime]\ndevice = "cpu"\n')
    engine = await InferenceEngine.start([tmp_path], threads=2, device="cuda")
    try:
        assert "CUDAExecutionProvider" in engine.models.status("plain").reason
        assert engine.models.status("pinned").state == "READY"
    finally:
        await engine.close()


def test_sessions_read_every_tensor_from_the_graph(tmp_path: Path) -> None:
    folder = add_model(tmp_path, "digits-copy")
    backend = OnnxBackend(read_model_folder(folder).source(1))
    assert backend.info.batched
    assert [(s.name, s.datatype, s.shape) for s in backend.info.inputs] == [
        ("input", "FP32", (1, 8, 8))
    ]
    outputs = backend.run({"input": np.zeros((3, 1, 8, 8), np.float32)})
    assert outputs["logits"].shape == (3, 10)
