"""Export torchvision's pretrained ResNet-18 as a modelwire model folder.

    pip install 'modelwire[train]' torchvision      # the weights download on first use
    python examples/export_torchvision_resnet.py models/
    modelwire serve --model-repository models/
    modelwire classify cat.jpg --model resnet18 --top-k 5

Any torchvision or timm classifier works the same way: put it in eval mode, export it
with a dynamic batch axis, and describe its preprocessing in model.toml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torchvision  # type: ignore[import-not-found, unused-ignore]

from modelwire.core.training.export import export_model_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("repository", type=Path, help="the model repository to write into")
    args = parser.parse_args()
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    model = torchvision.models.resnet18(weights=weights)
    folder = export_model_folder(
        model,
        args.repository / "resnet18",
        weights.meta["categories"],
        size=224,
        resize_shorter_to=256,
        description="torchvision ResNet-18, ImageNet-1k",
        batching="max_batch_size = 8\nmax_queue_delay_ms = 2",
    )
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
