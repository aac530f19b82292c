# Two commands a newcomer needs: `make dev` (serve the API locally) and `make test` (run every test).
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv test test-fast lint typecheck unit dev bench ctl clean

help:
	@echo "make dev    serve the whole API on 127.0.0.1:\$${PORT:-3000}"
	@echo "make test   set up on first run, then run every test"
	@echo "make lint   ruff and mypy"
	@echo "make bench  run the benchmarks"
	@echo "make ctl ARGS=...  operator CLI"

# The environment is rebuilt whenever a pin changes.
$(STAMP): requirements-dev.txt layers/tokencore/requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.12+ found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# dynalite (a DynamoDB that serializes conditional writes, unlike moto) for the race tests.
NODE_STAMP := node_modules/.package-lock.json
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(NODE_STAMP)
	$(VENV)/bin/pytest -q

# Quick loop while editing: no lint, stop at the first failure.
test-fast: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/pytest -q -x

dev: $(STAMP)
	@echo "make dev arrives with the local-stack issue (#5); until then use make test." >&2
	@exit 2

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .aws-sam
