# Two commands for a user: `make setup` (creates .venv with everything pinned) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-all lint run smoke bench report clean-results

setup: $(STAMP)

# Reinstall when the pins change. `pip install -e .` puts the `vit` package on the venv's path.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e .
	touch $@

test: setup
	$(BIN)/python -m pytest -q

test-all: setup  # includes the tests marked slow
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/snakemake --lint --cores 1

run: setup  # the default preset (config.yaml)
	$(BIN)/snakemake --cores all

smoke: setup
	$(BIN)/snakemake --cores all --configfile configs/smoke.yaml

bench: setup
	$(BIN)/snakemake --cores all bench

report: setup
	$(BIN)/snakemake --report reports/report.html
