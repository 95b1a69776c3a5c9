"""Sends every tensor of an .npz file to a model through tritonclient (unchanged) and
saves what came back, for the tensor plane's round-trip tests. Its own process, as
tritonclient_checks.py explains.

    python tritonclient_tensors.py grpc|http HOST:PORT MODEL IN.npz OUT.npz [json]

With `json` (HTTP only) the tensors travel as JSON, not binary.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np


def main() -> None:
    protocol, target, model, source, target_file = sys.argv[1:6]
    binary = sys.argv[6:] != ["json"]
    triton = importlib.import_module(f"tritonclient.{protocol}")
    client = triton.InferenceServerClient(target)
    metadata = client.get_model_metadata(model)
    if protocol == "http":
        datatypes = {t["name"]: t["datatype"] for t in metadata["inputs"]}
        outputs = [o["name"] for o in metadata["outputs"]]
    else:
        datatypes = {t.name: t.datatype for t in metadata.inputs}
        outputs = [o.name for o in metadata.outputs]
    arrays = dict(np.load(source, allow_pickle=True))
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), datatypes[name])
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    if protocol == "http":
        requested = [triton.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    else:
        requested = [triton.InferRequestedOutput(o) for o in outputs]
    result = client.infer(model, inputs, outputs=requested)
    np.savez(target_file, **{name: result.as_numpy(name) for name in outputs})


if __name__ == "__main__":
    main()
