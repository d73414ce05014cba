# Setup installs the CPU build of torch first, explicitly: a plain `torch` requirement would
# pull a multi-GB CUDA build. espeak-ng synthesises the test speech.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0

.PHONY: setup setup-system demo test test-all test-transformers5 lint

setup-system:
	@command -v espeak-ng >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq espeak-ng)

# The default environment runs transformers 4.57 (ci/transformers-4.txt says why);
# `make test-transformers5` runs the hf parity suite again on 5.x in a side venv.
setup:
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[all,dev]" -c ci/transformers-4.txt

demo: setup
	dwkit demo

test: setup setup-system
	$(PYTHON) -m pytest -q --durations=15 -m "not slow and not gpu" tests parity_tests

test-all: setup setup-system
	$(PYTHON) -m pytest -q -m "not gpu" tests parity_tests

# The hf parity suite (decoders, long-form vs transformers' own generate and pipeline, the
# converters and the parity gate) against transformers 5.x, in a venv that sees the default
# environment's packages and overrides only the transformers stack.
TF5_VENV ?= .venv-transformers5
HF_PARITY_SUITE = tests/longform/test_hf_parity.py tests/decoding tests/test_tokenizer.py \
	tests/test_features.py tests/converters/test_ct2.py tests/converters/test_ct2_import.py \
	tests/converters/test_onnx.py tests/runtimes/test_contract.py parity_tests

test-transformers5: setup setup-system
	$(PYTHON) -m venv --system-site-packages $(TF5_VENV)
	$(TF5_VENV)/bin/python -m pip install -q -r ci/transformers-5.txt
	$(TF5_VENV)/bin/python -m pip install -q --no-deps -e .
	$(TF5_VENV)/bin/python -m pytest -q --durations=10 -m "not slow and not gpu" $(HF_PARITY_SUITE)

lint:
	ruff check . && ruff format --check .
