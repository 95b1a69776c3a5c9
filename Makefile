# One entry point per chore. `make serve` and `make test` each create and fill .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_ARGS ?=

.PHONY: serve test lint typecheck pytest proto bench train-default-model clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "modelwire needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime only: ONNX Runtime, grpc, Pillow. No PyTorch.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Runtime + dev tools + the train extra (PyTorch) that the training-script test needs.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,train]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed  ## serve the default model on localhost:50051
	$(BIN)/modelwire serve $(SERVE_ARGS)

test: lint typecheck pytest  ## the whole suite: lint, type check, tests

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest

proto: $(VENV)/.dev-installed  ## regenerate src/modelwire/api from proto/
	$(BIN)/python scripts/gen_protos.py

bench: $(VENV)/.dev-installed  ## measure the numbers quoted in the README
	$(BIN)/python benchmarks/serve_latency.py
	$(BIN)/python benchmarks/inference_throughput.py

train-default-model: $(VENV)/.dev-installed  ## retrain the shipped digits model
	$(BIN)/python scripts/train_default_model.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
