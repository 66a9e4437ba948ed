# Patchwork: `make run` for a local demo, `make test` for the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
INTEROP := tests/interop
INTEROP_STAMP := $(INTEROP)/node_modules/.installed-stamp

.PHONY: run test test-offline lint bench venv interop clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

interop: $(INTEROP_STAMP)

$(INTEROP_STAMP): $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error
	touch $(INTEROP_STAMP)

run: $(STAMP)
	$(BIN)/python -m bot.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) $(INTEROP_STAMP) lint
	$(BIN)/python -m pytest

test-offline: $(STAMP) lint
	$(BIN)/python -m pytest -m "not synapse"

bench: $(STAMP)
	$(BIN)/python -m bench.command_cost
	$(BIN)/python -m bench.prompt_sweep
	$(BIN)/python -m bench.export
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.council

clean:
	rm -rf $(VENV) $(INTEROP)/node_modules .pytest_cache .mypy_cache .ruff_cache
