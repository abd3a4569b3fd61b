# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-chaos selfcheck test lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pyseata demo --purchases 200

run-chaos: $(STAMP)
	$(BIN)/pyseata demo --purchases 200 --chaos

selfcheck: $(STAMP)
	$(BIN)/pyseata selfcheck

test: $(STAMP)
	$(BIN)/python -m ruff check src tests bench fuzz examples
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests bench fuzz examples
	$(BIN)/python -m ruff format --check src tests bench fuzz examples

typecheck: $(STAMP)
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
