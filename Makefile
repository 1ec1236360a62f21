# Two entry points (see README): `make demo` and `make test`. Both create the venv if missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := data/demo
# Quiet pip; the machine-local find-links/file indexes of some hosts print harmless warnings.
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: venv demo test test-fast bench clean-demo help
help:
	@echo "make demo       set up .venv, build the synthetic corpus, ingest, train, evaluate"
	@echo "make test       set up .venv and run the whole test suite (incl. the slow end-to-end test)"
	@echo "make test-fast  the suite without the slow end-to-end test"
	@echo "make bench      run every benchmark (JSON in benchmarks/results/)"

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install $(PIP_FLAGS) -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, torchaudio, decord, av, librosa, soundfile, zarr, webdataset, accelerate, nvidia.dali"
	@touch $(STAMP)

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean-demo:
	rm -rf $(DEMO) runs/demo
