# The two commands a new user needs are `make run` and `make test`; see README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LINT_PATHS := postwise tests $(wildcard benchmarks)

.PHONY: run test check format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

## Start the whole platform with demo data on SQLite at http://127.0.0.1:8000
run: $(VENV)/.installed
	$(BIN)/postwise run --demo

## Run the whole test suite (SQLite; PostgreSQL too when POSTWISE_TEST_POSTGRES_URL is set)
test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

## Format check, lint and type check
check: $(VENV)/.installed-dev
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

## Benchmarks: import and bulk upsert throughput (set POSTWISE_BENCH_POSTGRES_URL for PostgreSQL)
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) postwise-data .pytest_cache .mypy_cache .ruff_cache
