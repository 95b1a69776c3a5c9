"""train_head: a head that learns what separates classes of vectors, the same for a
seed, kept at its best validation epoch."""

from __future__ import annotations

import numpy as np
import torch

from modelwire.core.training.text_head import train_head


def _clusters(seed: int, per_class: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, 16))
    vectors = np.concatenate([rng.normal(c, 0.3, (per_class, 16)) for c in centres])
    return vectors.astype(np.float32), np.repeat(np.arange(3), per_class)


def test_a_linear_head_separates_clusters_and_is_the_same_for_a_seed() -> None:
    vectors, targets = _clusters(0)
    held_out = _clusters(0, per_class=10)
    first = train_head(vectors, targets, 3, validation=held_out, epochs=100)
    again = train_head(vectors, targets, 3, validation=held_out, epochs=100)
    assert first.accuracy == 1.0
    assert 1 <= first.epochs <= 100
    state, other = first.head.state_dict(), again.head.state_dict()
    assert all(torch.equal(state[k], other[k]) for k in state)
    with torch.no_grad():
        predicted = first.head(torch.from_numpy(held_out[0])).argmax(dim=1).numpy()
    assert (predicted == held_out[1]).all()


def test_a_hidden_layer_learns_what_a_line_cannot() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    targets = ((vectors[:, 0] > 0) ^ (vectors[:, 1] > 0)).astype(np.int64)  # XOR
    linear = train_head(vectors, targets, 2, epochs=300)
    hidden = train_head(vectors, targets, 2, hidden=32, epochs=300, learning_rate=0.05)
    assert linear.accuracy < 0.75
    assert hidden.accuracy > 0.9
