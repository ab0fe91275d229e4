# imgflow: `make help` lists the targets. Every target sets up the environment it needs.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
# uv comes from PyPI (installed with pip when missing); the environment is .venv, from uv.lock.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
EXTRA ?= cpu
VENV := .venv
STAMP := $(VENV)/.installed-$(EXTRA)
RUN := $(UV) run --frozen --no-sync
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help env run repro test test-slow test-topology lint typecheck format ui serve serve-team deploy bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || command -v uv >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --extra $(EXTRA)
	@touch $@

env: $(STAMP) ## create .venv from uv.lock (EXTRA=gpu for TensorFlow's CUDA build)

run: $(STAMP) ## run the whole pipeline through Prefect on the bundled digits (ARGS="--source idx --path ...")
	$(RUN) imgflow run $(ARGS)

repro: $(STAMP) ## reproduce the pipeline with DVC alone (`dvc repro`)
	$(RUN) dvc repro

# Two pytest workers (one per core), a test file per worker at a time: the long pipeline tests
# spend much of their time in subprocesses and I/O, so the suite finishes sooner.
test: $(STAMP) ## run the test suite (fast: tiny epochs; excludes tests marked slow or topology)
	$(RUN) pytest -m "not slow and not topology" -n 2 --dist loadfile $(PYTEST_ARGS)

test-slow: $(STAMP) ## run only the slow tests (real MNIST data, longer training, server start-ups)
	$(RUN) pytest -m "slow and not topology" $(PYTEST_ARGS)

test-topology: $(STAMP) ## team-deployment tests: need PostgreSQL on 127.0.0.1:5432 (skipped otherwise)
	$(RUN) pytest -m topology $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint (complexity <= 12) and format check, mypy, functions <= 60 lines
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) python .ci/code_shape.py --fail

typecheck: $(STAMP) ## mypy on flows/, tasks/, models/ (settings in pyproject.toml)
	$(RUN) mypy

format: $(STAMP) ## ruff autofix and format
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

ui: $(STAMP) ## start the MLflow UI on http://127.0.0.1:5000 (prints the Prefect UI address too)
	@echo "Prefect UI: $${PREFECT_API_URL:-http://127.0.0.1:4200/api} (without /api), when \`make serve\` runs"
	$(RUN) imgflow ui

serve: $(STAMP) ## local production topology: Prefect server, cpu + gpu process workers, deployments
	$(RUN) python -m flows.serve

serve-team: $(STAMP) ## a team's shared servers: S3, MLflow + basic-auth and Prefect on PostgreSQL (docs/deploy.md)
	$(RUN) python -m flows.team $(ARGS)

deploy: $(STAMP) ## apply the deployments to the Prefect server at PREFECT_API_URL
	$(RUN) python -m flows.deploy

bench: $(STAMP) ## benchmark `make run` (full and no-op) on the digits default
	$(RUN) python benchmarks/bench_run.py

# git clean removes only files git does not track: the committed metrics, curves and drift
# baseline (metrics/*.json, plots/history, artifacts/accepted_data.json) stay.
clean: ## remove untracked pipeline outputs (keeps git-tracked files, data/, .venv, mlflow.db)
	git clean -d -f -x -q -- artifacts metrics plots reports/registry.json
