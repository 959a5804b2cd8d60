# Two commands for a user: `make run` (regenerates the default) and `make test` (every test; what CI runs).
# Both create .venv with everything pinned first if it is missing or the pins changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint run smoke bench report gpu-check

setup: $(STAMP)

# Reinstall when the pins change. `pip install -e .` puts the `vit` package on the venv's path.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e .
	touch $@

test: setup  # everything, the slow end-to-end tests included (CI)
	$(BIN)/python -m pytest -q

test-fast: setup  # the inner loop: everything but the tests marked slow (under a minute on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/snakemake --lint --cores 1

run: setup  # the default preset (config.yaml), then where its wall time x cores went (reports/timeline.md)
	$(BIN)/snakemake --cores all
	$(BIN)/python -m vit.report.timeline --results=results --out=reports/timeline.md

smoke: setup
	$(BIN)/snakemake --cores all --configfile configs/smoke.yaml --directory runs/smoke

bench: setup
	$(BIN)/snakemake --cores all bench

# On a GPU node, a few minutes: a bf16 ViT-B/16 step against a plain timm loop (MFU), JPEG shards feeding the GPU,
# a 384 px fine-tune from the released .npz layout, torchrun over NCCL, configs/paper-cifar.yaml's first steps;
# writes docs/benchmarks/gpu.json (vit.account.gpu_check). PY=python3 uses a node's own torch instead of .venv.
PY ?= $(BIN)/python
gpu-check: $(if $(filter $(BIN)/python,$(PY)),setup)
	$(PY) -m vit.account.gpu_check --out=docs/benchmarks/gpu.json

report: setup
	$(BIN)/snakemake --report reports/report.html
