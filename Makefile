# `make demo` and `make test` share one virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint chat

demo: $(VENV)/.installed
	$(BIN)/aios demo

test: $(VENV)/.installed $(VENV)/.bench
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 2

chat: $(VENV)/.installed
	$(BIN)/aios chat

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The tests also run the benchmarks' anchors (LangGraph), which the demo does not need.
$(VENV)/.bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@
