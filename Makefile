# densebench: the two commands a newcomer needs are `make reproduce` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= tiny
JOBS ?= 2

.PHONY: setup test test-fast reproduce smoke lint format clean-output

setup:  ## create .venv with the pinned stack and Detectron2 (idempotent)
	@bash scripts/setup.sh

test: setup  ## lint + the whole pytest suite (CPU), including the smoke end-to-end run
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-fast: setup  ## unit tests only (skips tests marked slow)
	$(PY) -m pytest -q -m "not slow"

reproduce: setup  ## the whole chain on the embedded synthetic data (profile tiny by default)
	$(PY) -m benchmarks reproduce --profile $(PROFILE) --jobs $(JOBS)

smoke: setup  ## the whole chain at the smallest scale (< 3 min)
	$(PY) -m benchmarks reproduce --profile smoke --jobs $(JOBS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean-output:  ## remove generated runs and results (keeps datasets and results/paper_reference.csv)
	rm -rf output results/smoke results/tiny
