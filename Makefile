# Two commands a newcomer needs: `make dev` (serve the API locally) and `make test` (run every test).
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv test test-fast lint typecheck unit dev bench load ctl clean lint-template scan-template build e2e-browser \
	deploy serverless-package events invoke

help:
	@echo "make dev    serve the whole API on 127.0.0.1:\$${PORT:-3000}"
	@echo "make test   set up on first run, then run every test"
	@echo "make e2e-browser  the browser client (web/) and /demo in headless Chromium"
	@echo "make lint   ruff and mypy"
	@echo "make lint-template  cfn-lint (+ serverless rules) and sam validate --lint on template.yaml and the example"
	@echo "make scan-template  checkov over the CloudFormation templates (findings fixed or suppressed in place)"
	@echo "make build  sam build (ARCH=arm64 by default, ARCH=x86_64 to switch); see docs/deploy.md"
	@echo "make deploy [ENV=prod]  validate, build, then sam deploy with samconfig.toml's profile"
	@echo "make serverless-package  serverless.yml (generated from template.yaml) packaged offline, then linted"
	@echo "make events  render events/ with fresh tokens from the running local stack (.dev/events)"
	@echo "make invoke FN=IssuerFunction EVENT=events/issuer/login-valid.json  one handler, no Docker"
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

# aws-jwt-verify for the Node verifier example (examples/verify/node), run by the e2e tests.
VERIFY_NODE_STAMP := examples/verify/node/node_modules/.package-lock.json
$(VERIFY_NODE_STAMP): examples/verify/node/package.json examples/verify/node/package-lock.json
	cd examples/verify/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

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

# examples/protected_api: a user's own API attached to the authorizer this template exports.
EXAMPLE_TEMPLATE := examples/protected_api/template.yaml

lint-template: $(SAM_STAMP)
	$(SAM_VENV)/bin/cfn-lint template.yaml $(EXAMPLE_TEMPLATE) -a cfn_lint_serverless.rules
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_ENV) $(SAM) validate --lint --template $(EXAMPLE_TEMPLATE)

# checkov, as teams run it in their pipelines, in its own venv (it pins its own boto3). Every
# finding is fixed or suppressed on the resource with a reason (docs/security.md, "Scanner").
# --skip-download: no policy metadata from the network; the built-in checks only.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_TEMPLATES := template.yaml $(EXAMPLE_TEMPLATE)
$(CHECKOV_STAMP): requirements-checkov.txt
	@test -n "$(PYTHON)" || { echo "no Python 3.12+ found" >&2; exit 1; }
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

scan-template: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  $(foreach t,$(CHECKOV_TEMPLATES),-f $(t))

build: $(SAM_STAMP)
	@test -n "$(PYTHON312)" || { echo "sam build needs python3.12 (set PYTHON312=/path/to/python3.12)" >&2; exit 1; }
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM_ENV) $(SAM) build --parameter-overrides Architecture=$(ARCH)
	@# Ship bytecode: sam build copies sources only, and Lambda's /opt and /var/task are read-only,
	@# so without .pyc every cold start compiles every module again (`make bench`: about twice
	@# the authorizer's cold start). unchecked-hash: the files never change after the build.
	$(PYTHON312) -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

# Deploy with samconfig.toml's profile ENV (dev, prod): the template is linted and built exactly
# as `make build` builds it (bytecode included), the profile checked against the template, and
# without AWS credentials it stops there and says so (deploy/__main__.py). NO_EXECUTE=1 creates
# the change set without executing it. REGION= overrides the profile's region.
ENV ?= dev
REGION ?=
deploy: lint-template build
	@PYTHONPATH=. $(SAM_ENV) $(SAM_VENV)/bin/python -m deploy --env $(ENV) --arch $(ARCH) \
	  $(if $(REGION),--region $(REGION)) $(if $(NO_EXECUTE),--no-execute)

# serverless.yml is generated from template.yaml (deploy/serverless.py); this checks that it is
# current, packages it with osls (package.json) offline, and lints the CloudFormation it makes.
SLS_OUT := .serverless
serverless-package: $(STAMP) $(NODE_STAMP) $(SAM_STAMP) $(CHECKOV_STAMP) build
	$(PY) -m deploy.serverless --check
	rm -rf $(SLS_OUT)
	$(PY) -m deploy.serverless --package $(SLS_OUT)
	@# W3005: serverless's own routes repeat a DependsOn; W1030: KmsSigningKeyId is empty by
	@# default, and the statement naming it exists only when it is set.
	$(SAM_VENV)/bin/cfn-lint --ignore-checks W3005 W1030 -- $(SLS_OUT)/cloudformation-template-update-stack.json
	@# The same scanner as scan-template, over what serverless generated (its own resources carry
	@# their suppressions through serverless.yml's resources.extensions).
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  -f $(SLS_OUT)/cloudformation-template-update-stack.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint lint-template scan-template build serverless-package $(NODE_STAMP) $(VERIFY_NODE_STAMP)
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

# events/ rendered with fresh tokens and ids from the running `make dev` stack, into the
# git-ignored .dev/events/ (devserver/events.py): `sam local invoke Fn -e .dev/events/<file>`.
events: $(STAMP)
	@$(PY) -m devserver.events

# One function's handler as `sam local invoke` runs it, without Docker (devserver/invoke.py):
# against the running `make dev` stack, else an embedded one; the response on stdout.
invoke: $(STAMP)
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<logical id> EVENT=<file>" >&2; exit 2; }
	@$(PY) -m devserver.invoke "$(FN)" "$(EVENT)"

# The operator CLI against the running local stack: the same endpoint, credentials and
# settings as `make dev` (devserver/settings.py). For AWS, run .venv/bin/tokenctl directly.
# make exits 2 whenever a recipe fails, so tokenctl's own exit code (1 failed, 2 usage) is
# printed here; run $(PY) -m devserver.ctl ARGS directly where a script needs it.
ctl: $(STAMP)
	@$(PY) -m devserver.ctl $(ARGS) || { code=$$?; echo "make ctl: tokenctl exited $$code ($(PY) -m devserver.ctl returns it; make returns 2)" >&2; exit $$code; }

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .aws-sam
