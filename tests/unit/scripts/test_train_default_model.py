"""scripts/train_default_model.py runs end to end and writes a model modelwire can serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from modelwire.core.repository import read_model_folder
from tests import processes
from tests.models import Classifier

ROOT = Path(__file__).resolve().parents[3]


def test_one_epoch_writes_a_servable_model(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    processes.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_default_model.py"),
            "--out",
            str(out),
            "--epochs",
            "1",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    assert metrics["split"] == {
        "method": "numpy.random.default_rng(seed).permutation(n); first test_size held out",
        "seed": 0,
        "test_size": 360,
    }
    # One epoch already learns a good part of the task.
    assert metrics["heldout_accuracy"] > 0.5
    classifier = Classifier(read_model_folder(out).source(1))
    probabilities = classifier.run(np.zeros((3, 1, 8, 8), np.float32))  # dynamic batch axis
    assert probabilities.shape == (3, 10)
