"""Image classification networks in plain PyTorch (no torchvision needed)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DigitsCNN", "ResNet", "resnet18", "small_resnet"]


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, one pooling, two dense layers: about 0.2 M parameters, for
    small grayscale images (8x8 digits by default; `size` x `size` inputs, even sizes)."""

    def __init__(self, num_classes: int = 10, *, size: int = 8, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(64 * (size // 2) ** 2, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x))
        return logits


class _BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = torch.relu(out + self.shortcut(x))
        return result


class ResNet(nn.Module):
    """A ResNet of basic blocks: `blocks` per stage, `width` channels in the first stage,
    doubling each stage. `small_input` swaps the 7x7/stride-2 stem and max-pool of
    ImageNet models for one 3x3 convolution, for inputs of 32x32 or less."""

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        in_channels: int = 3,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if small_input:
            self.stem: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            )
        stages: list[nn.Module] = []
        channels = width
        for index, count in enumerate(blocks):
            out = width * 2**index
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(_BasicBlock(channels, out, stride))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.stages(self.stem(x)))
        return logits


def small_resnet(num_classes: int, in_channels: int = 3) -> ResNet:
    """Three stages of one basic block, 16-32-64 channels, for 32x32-ish colour images:
    about 0.2 M parameters."""
    return ResNet(num_classes, (1, 1, 1), 16, in_channels=in_channels, small_input=True)


def resnet18(num_classes: int = 1000) -> ResNet:
    """The ResNet-18 shape (11.7 M parameters, 1.8 GFLOPs at 224x224)."""
    return ResNet(num_classes, (2, 2, 2, 2), 64)
