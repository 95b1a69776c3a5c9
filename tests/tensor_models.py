"""Real ONNX models built with onnx.helper, for the tensor plane's tests: small graphs
ONNX Runtime runs for real, each with a `model.toml` of `task = "tensor"`."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

#: Every Open Inference Protocol datatype and its ONNX element type.
ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _save(graph: onnx.GraphProto, folder: Path, toml: str = 'task = "tensor"\n') -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    (folder / "1").mkdir(parents=True)
    onnx.save(model, str(folder / "1" / "model.onnx"))
    (folder / "model.toml").write_text(toml)
    return folder


def identity_model(
    repository: Path, name: str = "identity", datatypes: tuple[str, ...] = tuple(ONNX_TYPES)
) -> Path:
    """in_<TYPE> [N, -1] → out_<TYPE> [N, -1], unchanged, for each datatype."""
    nodes, inputs, outputs = [], [], []
    for datatype in datatypes:
        element = ONNX_TYPES[datatype]
        inputs.append(helper.make_tensor_value_info(f"in_{datatype}", element, ["N", "L"]))
        outputs.append(helper.make_tensor_value_info(f"out_{datatype}", element, ["N", "L"]))
        nodes.append(helper.make_node("Identity", [f"in_{datatype}"], [f"out_{datatype}"]))
    return _save(helper.make_graph(nodes, name, inputs, outputs), repository / name)


def mixed_model(repository: Path, name: str = "mixed", toml: str = 'task = "tensor"\n') -> Path:
    """ids INT64 [N, L] and mask BOOL [N, L] → masked FP16 [N, L] (ids where mask, else 0)
    and total FP32 [N] (the sum of the masked ids): a tokenised text model's shape."""
    nodes = [
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "mask_f"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["masked"], to=TensorProto.FLOAT16),
        helper.make_node("ReduceSum", ["kept", "axes"], ["total"], keepdims=0),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "L"]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", "L"]),
        ],
        [
            helper.make_tensor_value_info("masked", TensorProto.FLOAT16, ["N", "L"]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"]),
        ],
        [axes],
    )
    return _save(graph, repository / name, toml)


#: The vocabulary of `text_model`: word → id; anything else is 0.
VOCABULARY = {"cat": 1, "dog": 2, "café": 3}


def text_model(repository: Path, name: str = "words") -> Path:
    """text BYTES [N] → ids INT64 [N] (a vocabulary lookup) and echo BYTES [N], as a
    scikit-learn text pipeline converted with skl2onnx takes strings."""
    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["text"],
            ["ids"],
            domain="ai.onnx.ml",
            keys_strings=list(VOCABULARY),
            values_int64s=list(VOCABULARY.values()),
            default_int64=0,
        ),
        helper.make_node("Identity", ["text"], ["echo"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("echo", TensorProto.STRING, ["N"]),
        ],
    )
    return _save(graph, repository / name)


def unbatched_model(repository: Path, name: str = "fixed") -> Path:
    """x FP32 [2, 3], no batch axis → doubled FP32 [2, 3] and rowsum FP32 [2]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["rowsum"], keepdims=0),
        ],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("rowsum", TensorProto.FLOAT, [2]),
        ],
        [two, axes],
    )
    return _save(graph, repository / name)


def scale_model(repository: Path, name: str = "scale", toml: str = 'task = "tensor"\n') -> Path:
    """pixels FP32 [N, 64] of 0..16 → image FP32 [N, 1, 8, 8] of 0..1: the preprocessing
    step of a pipeline in front of the digits classifier."""
    factor = helper.make_tensor("factor", TensorProto.FLOAT, [], [1.0 / 16.0])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 8, 8])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["pixels", "factor"], ["scaled"]),
            helper.make_node("Reshape", ["scaled", "shape"], ["image"]),
        ],
        name,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [factor, shape],
    )
    return _save(graph, repository / name, toml)


def tensor_repository(repository: Path) -> Path:
    """A repository of the tensor models above, for servers the SDK and CLI tests call."""
    mixed_model(repository)
    text_model(repository)
    unbatched_model(repository)
    return repository
