"""Train the iris classifier the `iris` Python model serves, on the data set that
scikit-learn bundles (no download), and save it as models/iris/<version>/model.joblib.

    python examples/sklearn_iris/train.py [--repository DIR] [--version N]

Then serve it (Python models run repository code, so they are opt-in):

    modelwire serve --model-repository examples/sklearn_iris/models --allow-python-models
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def train(repository: Path, version: int = 1) -> Path:
    features, labels = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features, labels)
    target = repository / "iris" / str(version)
    target.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, target / "model.joblib")
    return target / "model.joblib"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=HERE / "models")
    parser.add_argument("--version", type=int, default=1)
    args = parser.parse_args()
    print(train(args.repository, args.version))


if __name__ == "__main__":
    main()
