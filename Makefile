# Setup installs the CPU build of torch first, explicitly: a plain `torch` requirement would
# pull a multi-GB CUDA build. espeak-ng synthesises the test speech.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0

.PHONY: setup setup-system demo test test-all lint

setup-system:
	@command -v espeak-ng >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq espeak-ng)

setup:
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[all,dev]"

demo: setup
	dwkit demo

test: setup setup-system
	$(PYTHON) -m pytest -q --durations=15 -m "not slow and not gpu" tests parity_tests

test-all: setup setup-system
	$(PYTHON) -m pytest -q -m "not gpu" tests parity_tests

lint:
	ruff check . && ruff format --check .
