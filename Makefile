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

IMAGE ?= voxface:latest

.PHONY: venv demo test test-fast lint format bench docker clean-demo help
help:
	@echo "make demo       set up .venv, build the synthetic corpus, ingest, train, evaluate"
	@echo "make test       set up .venv and run the whole test suite (incl. the slow end-to-end test)"
	@echo "make test-fast  the suite without the slow end-to-end test"
	@echo "make lint       ruff (lint + format check) and mypy, as CI runs them"
	@echo "make format     apply ruff's fixes and formatting"
	@echo "make bench      run every benchmark (JSON in benchmarks/results/)"
	@echo "make docker     build the GPU training image (IMAGE=$(IMAGE)) running as your UID/GID"

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install $(PIP_FLAGS) -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, torchaudio, decord, av, librosa, soundfile, zarr, webdataset, accelerate, nvidia.dali"
	@touch $(STAMP)

# The demo: every stage a user runs on real VoxCeleb, on the built-in synthetic corpus.
# Each stage is resumable, so re-running `make demo` skips finished work.
demo: venv
	@echo "== 1/5 synthetic VoxCeleb1 + VoxCeleb2 corpus (real layouts and formats) -> $(DEMO)/corpus"
	$(PY) -m pipeline.synth --out $(DEMO)/corpus --identities 40 --videos-per-identity 3 --clips-per-video 2 --seed 0
	@echo "== 2/5 ingest -> WebDataset shards + DALI indexes + eval.zarr in $(DEMO)/shards"
	$(PY) -m pipeline.ingest --dataset voxceleb1 --root $(DEMO)/corpus/voxceleb1 --out $(DEMO)/shards \
	    --split-preset wen1251 --face-size 64 --frames-per-clip 2 --shard-samples 32 --workers 2
	$(PY) -m pipeline.ingest --dataset voxceleb2 --root $(DEMO)/corpus/voxceleb2 --out $(DEMO)/shards \
	    --split-preset vox2 --face-size 64 --frames-per-clip 2 --shard-samples 32 --workers 2
	@echo "== 3/5 train the demo preset (launch/configs/demo.yaml) -> runs/demo"
	$(PY) launch/train.py --config launch/configs/demo.yaml train.resume=auto
	@echo "== 4/5 evaluate on VoxCeleb1 Wen test identities (Binary: the K = 2 head; the other columns: embeddings)"
	$(PY) -m launch.evaluate --checkpoint runs/demo --data $(DEMO)/shards --protocol wen1251 --scoring auto \
	    --out runs/demo/eval/wen1251
	@echo "== 5/5 cross-dataset: the same model on the VoxCeleb2 test identities"
	$(PY) -m launch.evaluate --checkpoint runs/demo --data $(DEMO)/shards --protocol vox2test --scoring auto \
	    --out runs/demo/eval/vox2test
	@$(PY) -c "import json; o=json.load(open('$(DEMO)/corpus/ground_truth.json'))['oracle']; \
	  print('\nCeiling: an oracle that knows gender, age band and appearance group reaches 1:2 accuracy ' \
	  '%.3f (VoxCeleb1 test) and %.3f (VoxCeleb2 test); chance is 0.5.' % \
	  (o['voxceleb1/wen_test']['random_negatives'], o['voxceleb2/test']['random_negatives']))"
	@echo "Results: runs/demo/eval/*/results.md, accuracy-vs-K plots: runs/demo/eval/*/accuracy_vs_k.png"

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done
	$(PY) benchmarks/project_scale.py

# The image's user gets your UID/GID, so files it writes in a mounted runs/ are yours.
docker:
	docker build --build-arg UID=$$(id -u) --build-arg GID=$$(id -g) -t $(IMAGE) .

clean-demo:
	rm -rf $(DEMO) runs/demo
