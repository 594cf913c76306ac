# Every target creates .venv itself from pyproject.toml: a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROWS ?= 200000

.PHONY: setup run test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: a history (generated if none), a champion (trained and promoted if none),
## then the API on http://127.0.0.1:8000 with the champion loaded (Ctrl-C stops it).
run: $(STAMP)
	$(BIN)/aidrec run --rows $(ROWS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Lint, type-check and run the default test tiers (slow end-to-end tests excluded).
test: lint
	$(BIN)/pytest

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

bench: $(STAMP)
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_serve.py
	$(BIN)/python bench/bench_pages.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
