# Two commands a newcomer needs: `make dev` (serve the API locally) and `make test` (run every test).
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv test test-fast lint typecheck unit dev bench load ctl clean lint-template build e2e-browser

help:
	@echo "make dev    serve the whole API on 127.0.0.1:\$${PORT:-3000}"
	@echo "make test   set up on first run, then run every test"
	@echo "make e2e-browser  the browser client (web/) and /demo in headless Chromium"
	@echo "make lint   ruff and mypy"
	@echo "make lint-template  cfn-lint (+ serverless rules) and sam validate --lint on template.yaml"
	@echo "make build  sam build (ARCH=arm64 by default, ARCH=x86_64 to switch); see docs/deploy.md"
	@echo "make bench  run the benchmarks"
	@echo "make load   load and chaos run: invariants under concurrency and AWS faults"
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

# Template tools in their own venv: aws-sam-cli pins its own boto3/botocore, which must not
# clash with the layer's pins in .venv.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM := $(SAM_VENV)/bin/sam
# sam validate needs a region (and makes no AWS call); no telemetry from tests or CI.
SAM_ENV := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0
# The instruction set of the functions and the layer; sam build fetches manylinux wheels for
# it, so an x86_64 machine builds arm64 without Docker.
ARCH ?= arm64
# sam build runs pip with the python3.12 it finds on PATH (the Lambda runtime's version); a
# pyenv shim that does not select 3.12 is not enough, so put a real one first.
PYTHON312 ?= $(shell for p in "$$(command -v python3.12)" "$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)"/versions/3.12*/bin/python3.12; do [ -x "$$p" ] && "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { echo "$$p"; break; }; done)

$(SAM_STAMP): requirements-sam.txt
	@test -n "$(PYTHON)" || { echo "no Python 3.12+ found" >&2; exit 1; }
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	@touch $(SAM_STAMP)

lint-template: $(SAM_STAMP)
	$(SAM_VENV)/bin/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(SAM_ENV) $(SAM) validate --lint

build: $(SAM_STAMP)
	@test -n "$(PYTHON312)" || { echo "sam build needs python3.12 (set PYTHON312=/path/to/python3.12)" >&2; exit 1; }
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM_ENV) $(SAM) build --parameter-overrides Architecture=$(ARCH)
	@# Ship bytecode: sam build copies sources only, and Lambda's /opt and /var/task are read-only,
	@# so without .pyc every cold start compiles every module again (`make bench`: about twice
	@# the authorizer's cold start). unchecked-hash: the files never change after the build.
	$(PYTHON312) -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint lint-template build $(NODE_STAMP)
	$(VENV)/bin/pytest -q

# The browser client (web/tokencore.js) and the /demo page in headless Chromium, against the
# local stack (tests/browser; screenshots in test-artifacts/browser/). Debian's chromium,
# installed with apt-get when missing (as root, else through sudo), driven by Playwright's
# Python driver (requirements-browser.txt); `playwright install` never runs, no browser build
# is downloaded. CHROMIUM=/path/to/chromium to use another.
CHROMIUM ?= /usr/bin/chromium
BROWSER_STAMP := $(VENV)/.browser-installed
$(BROWSER_STAMP): $(STAMP) requirements-browser.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-browser.txt
	@touch $(BROWSER_STAMP)

e2e-browser: $(BROWSER_STAMP)
	@test -x "$(CHROMIUM)" || { \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing Debian's chromium (apt-get install chromium)"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium >/dev/null; }
	CHROMIUM="$(CHROMIUM)" $(VENV)/bin/pytest -q tests/browser

# Quick loop while editing: no lint, stop at the first failure.
test-fast: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/pytest -q -x

# Benchmarks (bench/): every performance budget with its figure and a pass or a miss, as the
# README shows them. Bench-only peers (jwcrypto, python-jose) go into .venv, never the layer.
# BENCH_ARGS="--quick" for a smoke run, "--only hotpath coldstart" for some sections.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# The load and chaos run (load/, docs/capacity.md): 10,000 requests from 48 concurrent clients
# against a local stack of its own, 10% of the functions' AWS calls failing (throttling, server
# errors, lost responses); prints throughput, latency per route and the invariant tally, and
# exits non-zero on any violation. LOAD_ARGS="--quick" for 1,000 requests (make test runs that
# as tests/load); `.venv/bin/python -m load --help` lists the options.
load: $(STAMP)
	$(PY) -m load $(LOAD_ARGS)

# The whole API from template.yaml on 127.0.0.1:$${PORT:-3000}, AWS (moto) on $${AWS_PORT:-4566};
# settings from the environment (README "Local stack"). Ctrl-C stops it.
dev: $(STAMP)
	@$(PY) -m devserver

# The operator CLI against the running local stack: the same endpoint, credentials and
# settings as `make dev` (devserver/settings.py). For AWS, run .venv/bin/tokenctl directly.
ctl: $(STAMP)
	@$(PY) -m devserver.ctl $(ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .aws-sam
