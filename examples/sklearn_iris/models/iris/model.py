"""A scikit-learn model served as a modelwire Python model: `load` reads the version's
model.joblib (written by examples/sklearn_iris/train.py), `predict` takes a batch of
feature rows and gives the predicted class and the class probabilities."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np


class IrisModel:
    def load(self, folder: Path) -> None:
        self.model = joblib.load(folder / "model.joblib")

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = inputs["features"]
        return {
            "label": self.model.predict(features).astype(np.int64),
            "probabilities": self.model.predict_proba(features).astype(np.float32),
        }
