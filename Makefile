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

# Runtime with every serving extra (REST, text, PostgreSQL, certificates). No PyTorch.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[full]'
	touch $@

# Runtime + dev tools + the train extra (PyTorch) that the training-script test needs.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[full,dev,train,bench,speech,ocr]'
	touch $@ $(VENV)/.serve-installed

# buf and the Node.js example's libraries, where npm exists. Under CI=true a missing npm
# fails the run (.ci/run installs it); elsewhere buf lint and the Node.js test are skipped.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --silent && touch $@; \
	elif [ "$$CI" = true ]; then echo "CI needs npm (Node.js) for buf lint and the Node.js client test" >&2; exit 1; \
	else echo "npm not found: buf lint and the Node.js client test are skipped"; fi

serve: $(VENV)/.serve-installed  ## serve the default model on localhost:50051
	$(BIN)/modelwire serve $(SERVE_ARGS)

test: lint typecheck pytest  ## the whole suite: lint, type check, tests

lint: $(VENV)/.dev-installed node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if [ -x node_modules/.bin/buf ]; then node_modules/.bin/buf lint && echo "buf lint: ok"; \
	elif [ "$$CI" = true ]; then echo "CI needs buf (npm ci installs it)" >&2; exit 1; \
	else echo "buf lint skipped: npm not found"; fi

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed node_modules/.installed
	$(BIN)/pytest

proto: $(VENV)/.dev-installed  ## regenerate src/modelwire/api from proto/
	$(BIN)/python scripts/gen_protos.py

bench: $(VENV)/.dev-installed  ## measure the numbers quoted in the README
	scripts/bench_tools.sh
	$(BIN)/python benchmarks/per_call.py
	$(BIN)/python benchmarks/per_call.py --event-loop asyncio \
		--out benchmarks/results/per_call_asyncio.json
	$(BIN)/python benchmarks/switches.py
	$(BIN)/python benchmarks/call_shape.py --repeat 5
	$(BIN)/python benchmarks/hot_path.py
	for piece in guard checks answer resolve batcher infer; do \
		PYTHON=$(BIN)/python benchmarks/instructions.sh $$piece || exit 1; done
	$(BIN)/python benchmarks/serve_latency.py
	$(BIN)/python benchmarks/inference_throughput.py
	$(BIN)/python benchmarks/grpc_vs_rest.py
	$(BIN)/python benchmarks/text_embedding.py
	$(BIN)/python benchmarks/speech.py
	$(BIN)/python benchmarks/ocr.py
	$(BIN)/python benchmarks/edge.py
	sh benchmarks/image_size.sh $(BIN)/python
	$(BIN)/python benchmarks/data_and_training.py
	$(BIN)/python benchmarks/workers.py
	$(BIN)/python benchmarks/plane_regression.py
	$(BIN)/python benchmarks/gpu.py

train-default-model: $(VENV)/.dev-installed  ## retrain the shipped digits model
	$(BIN)/python scripts/train_default_model.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
