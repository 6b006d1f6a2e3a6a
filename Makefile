# chainlake developer commands. `make demo` sets everything up and runs the main job;
# `make test` runs the test suite. Both work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup chromium demo dev test test-quick lint bench soak clean

$(STAMP): pyproject.toml package.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	npm ci --no-audit --no-fund --loglevel=error
	$(BIN)/python -m ingestion.jvm_cache  # Spark's classes archived once: faster JVM starts
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the UI test (tests/browser.py: Playwright drives it, downloading nothing).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "note: no chromium (Debian package, needs root): the UI test will be skipped"; fi; }

demo: setup
	$(BIN)/python -m assets.demo

# `make dev ARGS="--devnet-port 8602 --ui-port 3002 --block-time 12"`; DAGSTER_HOME and
# CHAINLAKE_LAKE_URI from the environment are honoured (python -m assets.dev --help).
dev: setup
	$(BIN)/python -m assets.dev $(ARGS)

test: setup chromium
	$(BIN)/python -m pytest

test-quick: setup
	$(BIN)/python -m pytest -m 'not slow'

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/dagster_backfill.py
	$(BIN)/python benchmarks/continuity.py

soak: setup
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf lake .dagster_home .pytest_cache .ruff_cache
