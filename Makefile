# leadflow — developer entry points. `make run` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PORT ?= 8080
STAGE ?= dev
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
CDK := npx --no-install cdk --no-notices

.PHONY: setup run test lint typecheck unit integration infra e2e bench synth bootstrap deploy destroy diff clean proof proof-setup

setup: $(PY_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(PY_STAMP) ## start the whole system locally on an embedded AWS
	PORT=$(PORT) $(BIN)/python -m leadflow.local

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY_STAMP)
	$(BIN)/mypy
	# each handler is a module named app: one mypy run per function
	for app in functions/*/app.py; do $(BIN)/mypy --config-file pyproject.toml $$app || exit 1; done

test: lint typecheck $(PY_STAMP) ## lint, type checks and every test tier
	$(BIN)/python -m pytest -n 2 --dist loadfile -q tests

unit: $(PY_STAMP)
	$(BIN)/python -m pytest -q tests/unit
integration: $(PY_STAMP)
	$(BIN)/python -m pytest -q tests/integration
infra: $(PY_STAMP)
	$(BIN)/python -m pytest -q tests/infra
e2e: $(PY_STAMP)
	$(BIN)/python -m pytest -q tests/e2e

bench: $(PY_STAMP) ## print speed/cost figures as ratios measured in one run
	$(BIN)/python -m bench

# Debian's chromium for the browser proof (Playwright drives it; no browser is downloaded). Idempotent.
CHROMIUM := /usr/bin/chromium
proof-setup: $(PY_STAMP) ## install what `make proof` needs (headless Chromium from Debian)
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $$($(CHROMIUM) --version 2>/dev/null)"; else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; fi

proof: proof-setup ## reliability proof: browser, load, faults, hostile input, access (summary table)
	$(BIN)/python -m tests.proof

synth: $(PY_STAMP) $(NODE_STAMP) ## CloudFormation template into cdk.out/ (no Docker, no AWS account)
	$(CDK) synth --context stage=$(STAGE) --quiet
	@echo "templates: $$(ls cdk.out/*.template.json)"

diff: $(PY_STAMP) $(NODE_STAMP)
	$(CDK) diff --context stage=$(STAGE)

bootstrap: $(PY_STAMP) $(NODE_STAMP) ## once per account and region: the CDK toolkit stack
	$(CDK) bootstrap --context stage=$(STAGE)

deploy: $(PY_STAMP) $(NODE_STAMP) ## deploy into the AWS account of your current credentials
	# the deploy itself carries out each changed journey's on_change (the journey_changes function,
	# a CDK Trigger); `leadflow journeys apply-changes --stage` re-runs it (journeys/README.md)
	$(CDK) deploy --context stage=$(STAGE) --require-approval broadening

destroy: $(PY_STAMP) $(NODE_STAMP) ## delete the stage's stack (tables of retain_data stages stay)
	$(CDK) destroy --context stage=$(STAGE)

clean:
	rm -rf $(VENV) node_modules cdk.out .mypy_cache .ruff_cache .pytest_cache
