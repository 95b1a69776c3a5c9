"""A trainer for tests, without PyTorch, that keeps to `core.training.runner`'s protocol:
one epoch line per epoch on stdout, then the built-in digits network as the trained
version (an image classifier of the digits-cnn shape, so it loads and serves).

Set in the environment: FAKE_TRAINER_GATE, the path of a FIFO: after its first epoch the
trainer waits until the test writes a line to it: "go" goes on, anything else fails the
run with that line as its last word on stderr."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

DIGITS = Path(__file__).resolve().parents[1] / "src/modelwire/default_models/digits/1"


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    output = Path(spec["output"])
    for epoch in range(1, spec["epochs"] + 1):
        accuracy = 0.5 + epoch / 100
        loss = 1 / epoch
        line = {"event": "epoch", "epoch": epoch, "seconds": 0.01}
        line |= {"train_loss": loss, "validation_loss": loss, "validation_accuracy": accuracy}
        print(json.dumps(line), flush=True)
        gate = os.environ.get("FAKE_TRAINER_GATE")
        if epoch == 1 and gate:
            with open(gate) as fifo:
                word = fifo.readline().strip()
            if word != "go":
                print(f"told to fail: {word}", file=sys.stderr)
                return 3
    shutil.copy2(DIGITS / "model.onnx", output / "model.onnx")
    (output / "metrics.json").write_text(json.dumps({"validation_accuracy": accuracy}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
