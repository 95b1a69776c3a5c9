"""A text classifier's head: a linear layer (or a small MLP) from a text-embedding
model's vectors to class scores, trained with PyTorch on vectors the server computed.

Training is full-batch (a few thousand vectors of a few hundred numbers fit in memory)
with Adam and weight decay, deterministic for a seed; the head that classifies the
validation vectors best across the epochs is the one returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["HeadResult", "train_head"]


@dataclass
class HeadResult:
    head: nn.Module
    #: Accuracy on the validation vectors (on the training vectors when none were given).
    accuracy: float
    epochs: int


def train_head(
    vectors: np.ndarray,
    targets: np.ndarray,
    classes: int,
    *,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    hidden: int = 0,
    epochs: int = 300,
    learning_rate: float = 0.01,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> HeadResult:
    """A head for `vectors` [n, width] with class indices `targets` [n]; `hidden` > 0
    puts one hidden layer of that size (ReLU) before the scores."""
    torch.manual_seed(seed)
    width = vectors.shape[1]
    head: nn.Module = (
        nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        if hidden
        else nn.Linear(width, classes)
    )
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    y = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    check_x, check_y = (
        (torch.from_numpy(np.asarray(validation[0], np.float32)), np.asarray(validation[1]))
        if validation is not None
        else (x, np.asarray(targets))
    )
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss_of = nn.CrossEntropyLoss()
    best = (-1.0, 0, {k: v.clone() for k, v in head.state_dict().items()})
    for epoch in range(1, epochs + 1):
        head.train()
        optimiser.zero_grad()
        loss = loss_of(head(x), y)
        loss.backward()
        optimiser.step()
        head.eval()
        with torch.no_grad():
            predicted = head(check_x).argmax(dim=1).numpy()
        accuracy = float((predicted == check_y).mean())
        if accuracy > best[0]:
            best = (accuracy, epoch, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    head.eval()
    return HeadResult(head, best[0], best[1])
