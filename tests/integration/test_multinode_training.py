"""The trainer spans machines with torchrun's own rendezvous, as docs/deploy.md shows:
two torchrun "nodes" (here both on loopback) meet at a c10d endpoint and train one job
with DistributedDataParallel; rank 0 reports and exports."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelwire.core.training.spec import JobConfig, TrainerSpec, input_config
from tests import processes
from tests.images import digit_picture, encode, heldout_digits
from tests.requirements import need_module

need_module("torch", 'PyTorch (pip install -e ".[train]")')


def write_spec(root: Path, epochs: int) -> Path:
    images, labels = heldout_digits()
    examples = []
    for index, (pixels, label) in enumerate(zip(images[:300], labels[:300], strict=True)):
        path = root / "images" / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(digit_picture(pixels)))
        examples.append((path, str(label)))
    config = JobConfig(dataset="d", model="m", epochs=epochs).checked()
    output = root / "output"
    output.mkdir()
    spec = TrainerSpec(
        examples=examples,
        labels=sorted({label for _, label in examples}),
        architecture=config.architecture,
        input=input_config(config),
        epochs=epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        validation_fraction=config.validation_fraction,
        seed=0,
        threads=1,
        output=output,
    )
    path = root / "spec.json"
    path.write_text(spec.model_dump_json())
    return path


def test_two_nodes_meet_at_a_rendezvous_endpoint_and_train(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, epochs=4)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-id", "test-job", "-m", "modelwire.core.training.trainer", str(spec),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Files, not pipes: waiting on one node must not leave the other blocked on a full pipe.
    logs = [(tmp_path / f"node{i}.out", tmp_path / f"node{i}.err") for i in range(2)]
    nodes = []
    for out, err in logs:
        with out.open("w") as stdout, err.open("w") as stderr:
            nodes.append(processes.popen(command, stdout=stdout, stderr=stderr, env=environment))
    for node in nodes:
        node.wait(timeout=300)
    # Every node's end, not only the first failing one's: a node that fails takes the
    # rendezvous store with it, and the others then fail with only that to say.
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    assert [node.returncode for node in nodes] == [0, 0], "\n\n".join(
        f"node {i} exited {node.returncode}:\n{stderr[-2000:]}"
        for i, (node, (_, stderr)) in enumerate(zip(nodes, outputs, strict=True))
    )
    events = [
        json.loads(line)
        for stdout, _ in outputs
        for line in stdout.splitlines()
        if line.startswith("{")
    ]
    # One process (rank 0, on whichever node) reported each epoch once, and finished.
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3, 4]
    assert [e["event"] for e in events].count("done") == 1
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["epochs"] == 4
    session = ort.InferenceSession(str(tmp_path / "output" / "model.onnx"))
    (scores,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, 1, 8, 8), "f4")})
    assert scores.shape == (3, 10)
