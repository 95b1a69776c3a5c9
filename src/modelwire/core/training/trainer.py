"""The training process: one job, run apart from the server.

    python -m modelwire.core.training.trainer SPEC.json

Reads a `TrainerSpec`, decodes and preprocesses every example with the very code the
server classifies with (so training and serving see the same tensors) — or, for a text
classifier's head, reads the embeddings the server computed — trains with Adam
on a stratified split, and writes `model.onnx` (dynamic batch axis) and `metrics.json`
into the spec's output folder. Progress goes to stdout as one JSON object per line:
{"event": "started", ...}, {"event": "epoch", ...} per epoch, {"event": "done", ...}.

Under torch.distributed's launcher (the server runs `torchrun --standalone
--nproc-per-node N` for a job with N workers; several machines can run the same module
with a shared rendezvous endpoint, see docs/deploy.md) it trains with
DistributedDataParallel: every process holds the whole (small) dataset, takes its share
of each batch, and the gradients are averaged, so N workers follow one worker's steps
with the same global batch size. Rank 0 alone reports, validates and exports.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from modelwire.core.images import decode, reduce, tensor_batch
from modelwire.core.training.architectures import DigitsCNN, small_resnet
from modelwire.core.training.export import export_onnx
from modelwire.core.training.spec import TEXT_ARCHITECTURES, TrainerSpec, held_out

CHUNK = 256  # images decoded and preprocessed at a time


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def load(spec: TrainerSpec) -> tuple[np.ndarray, np.ndarray]:
    index = {label: i for i, label in enumerate(spec.labels)}
    labels = np.array([index[label] for _, label in spec.examples], dtype=np.int64)
    if spec.vectors is not None:
        vectors = np.load(spec.vectors).astype(np.float32, copy=False)
        if vectors.shape[0] != len(labels):
            sys.exit(f"{len(vectors)} embeddings for {len(labels)} examples")
        return vectors, labels
    assert spec.input is not None  # an image job
    preprocessing = spec.input.preprocessing()
    tensors = []
    for start in range(0, len(spec.examples), CHUNK):
        chunk = spec.examples[start : start + CHUNK]
        # Each picture reduced as soon as it is decoded: a chunk holds only small ones.
        images = [reduce(decode(path.read_bytes()), preprocessing) for path, _ in chunk]
        tensors.append(tensor_batch(images, preprocessing))
    return np.concatenate(tensors), labels


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation examples: `held_out` of each label for
    validation, picked at random with `seed`."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    validation: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held = held_out(len(members), fraction)
        validation.extend(members[:held])
        train.extend(members[held:])
    return np.array(train), np.array(validation)


def build(spec: TrainerSpec, inputs: np.ndarray) -> nn.Module:
    classes = len(spec.labels)
    if spec.architecture in TEXT_ARCHITECTURES:
        width, hidden = inputs.shape[1], TEXT_ARCHITECTURES[spec.architecture]
        if not hidden:
            return nn.Linear(width, classes)
        return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    assert spec.input is not None  # an image job
    channels = spec.input.channels
    if spec.architecture == "digits-cnn":
        return DigitsCNN(classes, size=spec.input.width, in_channels=channels)
    return small_resnet(classes, in_channels=channels)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)])
        loss = float(nn.functional.cross_entropy(logits, y))
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return loss, accuracy


class World:
    """This process's place among the job's processes (1 of 1 without a launcher)."""

    def __init__(self) -> None:
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.size > 1:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=timedelta(seconds=120))

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        return DistributedDataParallel(model) if self.size > 1 else model

    def total(self, value: float) -> float:
        """`value` summed over every process."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor[0])

    def close(self) -> None:
        if self.size > 1:
            dist.destroy_process_group()


def check_server_alive(parent: int) -> None:
    """Exit if the server is gone (killed without a chance to stop this job)."""
    server = int(os.environ.get("MODELWIRE_SERVER_PID", "0"))
    if server:
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            sys.exit("the server is gone")
    if os.getppid() != parent:
        sys.exit("the server is gone")


def train(spec: TrainerSpec) -> None:
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    world = World()
    tensors, labels = load(spec)
    train_index, validation_index = stratified_split(labels, spec.validation_fraction, spec.seed)
    x_train, y_train = torch.from_numpy(tensors[train_index]), torch.from_numpy(labels[train_index])
    x_val = torch.from_numpy(tensors[validation_index])
    y_val = torch.from_numpy(labels[validation_index])
    if world.leader:
        emit("started", train=len(y_train), validation=len(y_val), labels=len(spec.labels))

    network = build(spec, tensors)
    model = world.wrap(network)
    optimiser = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=spec.epochs)
    generator = torch.Generator().manual_seed(spec.seed)  # the same order in every process
    parent = os.getppid()
    for epoch in range(1, spec.epochs + 1):
        check_server_alive(parent)
        started = time.monotonic()
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), spec.batch_size):
            # Each process takes every size-th example of the batch (the last one too,
            # short as it may be: a process with none takes one, counted with no weight).
            batch = order[start : start + spec.batch_size]
            mine = batch[world.rank :: world.size]
            weight = len(mine)
            if not weight:
                mine = batch[:1]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[mine]), y_train[mine])
            # DDP averages gradients over processes; scale so that equals the mean over
            # the whole batch, whatever share each process had.
            scale = weight * world.size / len(batch)
            (loss * scale).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += loss.item() * weight
        total = world.total(total)
        schedule.step()
        if world.leader:
            validation_loss, accuracy = evaluate(network, x_val, y_val)
            emit(
                "epoch",
                epoch=epoch,
                train_loss=total / len(y_train),
                validation_loss=validation_loss,
                validation_accuracy=accuracy,
                seconds=time.monotonic() - started,
            )
    world.close()
    if not world.leader:
        return

    network.eval()
    if spec.input is None:  # a text head: embeddings in
        export_onnx(network, spec.output / "model.onnx", tensors.shape[1:], input_name="embedding")
    else:
        shape = (spec.input.channels, spec.input.height, spec.input.width)
        export_onnx(network, spec.output / "model.onnx", shape)
    metrics = {
        "validation_accuracy": accuracy,
        "validation_loss": validation_loss,
        "train_examples": len(y_train),
        "validation_examples": len(y_val),
        "epochs": spec.epochs,
        "architecture": spec.architecture,
    }
    (spec.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    emit("done", validation_accuracy=accuracy)


def main() -> None:
    spec = TrainerSpec.model_validate_json(Path(sys.argv[1]).read_text())
    # Serving shares the machine: let it have the cores first.
    os.nice(10)
    train(spec)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Gloo's worker threads outlive destroy_process_group, and one may still be
        # releasing the last collective's tensors, which takes the GIL: during the
        # interpreter's shutdown that aborts the process (SIGABRT, "terminate called
        # without an active exception", about one run in ten). Everything is written and
        # flushed by now, so leave without that shutdown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
