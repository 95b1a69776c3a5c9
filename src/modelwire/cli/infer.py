"""`modelwire infer`: run any model on tensors from .npy files or JSON, over the Open
Inference Protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from modelwire.cli.common import TargetOption, connected, fail

__all__ = ["infer"]


def infer(
    model: Annotated[str, typer.Argument(help="The model to run.")],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input",
            help="NAME=FILE.npy, NAME=FILE.json or NAME=JSON (a nested list, as the "
            "model's datatype; strings for BYTES). Repeat for each input.",
        ),
    ],
    outputs: Annotated[
        list[str] | None, typer.Option("--output", help="Only this output (repeatable).")
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="Model version (default: the model's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    target: TargetOption = "localhost:50051",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    """Run MODEL on the given input tensors and print every output (or those --output names)."""
    with connected(target, timeout) as client:
        datatypes = client.input_datatypes(model, version=version)
        tensors = {}
        for given in inputs:
            name, sep, value = given.partition("=")
            if not sep or not name:
                raise fail(f"--input {given[:64]!r}: write NAME=FILE.npy or NAME=JSON")
            if name not in datatypes:
                raise fail(
                    f"--input {name!r}: model {model!r} has no such input; its inputs are "
                    + ", ".join(datatypes)
                )
            tensors[name] = _tensor(name, value, datatypes[name])
        answer = client.infer(model, tensors, version=version, outputs=outputs, timeout=timeout)
    if as_json:
        typer.echo(json.dumps({name: _described(array) for name, array in answer.items()}))
        return
    for name, array in answer.items():
        typer.echo(
            f"{name}\t{array.dtype if array.dtype != object else 'BYTES'}\t{list(array.shape)}"
        )
        typer.echo(np.array2string(array, threshold=200))


def _tensor(name: str, value: str, datatype: str) -> np.ndarray:
    from modelwire.core.tensors import DATATYPES, from_values
    from modelwire.errors import InvalidInput

    path = Path(value)
    try:
        if value.endswith(".npy"):
            return _as_type(name, np.load(path, allow_pickle=False), datatype)
        text = path.read_text(encoding="utf-8") if value.endswith(".json") else value
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise fail(f"--input {name}: cannot read {value[:64]!r}: {exc}") from None
    array = np.asarray(data, dtype=object)
    values = list(array.reshape(-1))
    if datatype == "BYTES":
        values = [v.encode() if isinstance(v, str) else v for v in values]
    try:
        return from_values(DATATYPES[datatype], array.shape, values, name)
    except InvalidInput as error:
        raise fail(f"--input {name}: {error.message}") from None


def _as_type(name: str, array: np.ndarray, datatype: str) -> np.ndarray:
    """A .npy array as the model's datatype, where numpy casts it without loss of kind
    (float64 → FP32, int32 → INT64); else as it is, for the server to refuse."""
    from modelwire.datatypes import DATATYPES

    if datatype == "BYTES":
        return array
    target = DATATYPES[datatype].dtype
    if array.dtype != target and np.can_cast(array.dtype, target, "same_kind"):
        return array.astype(target)
    return array


def _described(array: np.ndarray) -> dict[str, Any]:
    from modelwire.datatypes import datatype_of

    if array.dtype == object:
        data: Any = [e.decode(errors="replace") for e in array.reshape(-1)]
        data = np.asarray(data, dtype=object).reshape(array.shape).tolist()
    else:
        data = array.tolist()
    return {"datatype": datatype_of(array).name, "shape": list(array.shape), "data": data}
