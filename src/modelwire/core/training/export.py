"""Export a PyTorch classifier to the ONNX file modelwire serves."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "export_model_folder",
    "export_onnx",
    "export_text_classifier_folder",
]


def export_onnx(
    model: nn.Module,
    path: Path,
    input_shape: tuple[int, ...],
    *,
    input_name: str = "input",
    output_name: str = "logits",
) -> Path:
    """Write `model` (in eval mode) as ONNX with a dynamic batch axis: input
    [batch, *input_shape], output [batch, classes]. One self-contained file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings():
        # The exporter's own deprecation chatter (pytree internals) is not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape),),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=18,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def export_model_folder(
    model: nn.Module,
    folder: Path,
    labels: Sequence[str],
    *,
    size: int,
    channels: int = 3,
    version: int = 1,
    resize_shorter_to: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    description: str = "",
    batching: str = "",
    instances: int = 1,
    threads: int = 1,
) -> Path:
    """Write a complete modelwire model folder: <folder>/<version>/model.onnx,
    labels.txt and model.toml for a square `size` x `size` input scaled to 0..1 and
    normalised with mean/std (ImageNet's by default). With `resize_shorter_to`, images
    are scaled so their shorter side has that length, then centre-cropped (torchvision's
    recipe); otherwise they are stretched to size x size. `batching` is the body of the
    [batching] table; `instances` and `threads` are ONNX Runtime sessions and their
    intra-op threads."""
    export_onnx(model, folder / str(version) / "model.onnx", (channels, size, size))
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    resize = (
        f'resize = "shorter-side"\nresize_shorter_to = {resize_shorter_to}\n'
        if resize_shorter_to
        else 'resize = "stretch"\n'
    )
    (folder / "model.toml").write_text(
        f'name = "{folder.name}"\n'
        'task = "image-classification"\n'
        f"description = {_toml_string(description)}\n"
        'labels_file = "labels.txt"\n'
        f"instances = {instances}\nthreads = {threads}\n\n"
        "[input]\n"
        'name = "input"\n'
        f"width = {size}\nheight = {size}\nchannels = {channels}\n"
        'layout = "NCHW"\nresample = "bilinear"\n'
        f"{resize}"
        "scale = 0.00392156862745098\n"
        f"mean = {list(mean)}\nstd = {list(std)}\n\n"
        '[output]\nname = "logits"\nkind = "logits"\n'
        + (f"\n[batching]\n{batching}\n" if batching else "")
    )
    return folder


def export_text_classifier_folder(
    head: nn.Module,
    folder: Path,
    labels: Sequence[str],
    *,
    width: int,
    embedding_model: str,
    embedding_version: int | None = None,
    version: int = 1,
    description: str = "",
) -> Path:
    """Write a text classifier's model folder: <folder>/<version>/model.onnx (the head,
    embeddings [batch, width] → logits [batch, classes]), labels.txt and model.toml
    naming the embedding model whose vectors it classifies."""
    export_onnx(head, folder / str(version) / "model.onnx", (width,), input_name="embedding")
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    pinned = f"version = {embedding_version}\n" if embedding_version is not None else ""
    (folder / "model.toml").write_text(
        f'name = "{folder.name}"\n'
        'task = "text-classification"\n'
        f"description = {_toml_string(description)}\n"
        'labels_file = "labels.txt"\n\n'
        f"[embedding]\nmodel = {_toml_string(embedding_model)}\n{pinned}\n"
        '[output]\nname = "logits"\nkind = "logits"\n\n'
        "[batching]\nmax_batch_size = 64\n"
    )
    return folder


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
