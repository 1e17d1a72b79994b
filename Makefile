# The two commands a new user needs: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev bench

$(BIN)/leadflow: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(BIN)/leadflow package.json
	$(BIN)/pip install -q -e '.[dev]'
	npm install --no-audit --no-fund --silent
	touch $@

install: $(BIN)/leadflow
install-dev: $(VENV)/.dev

# Embedded default: SQLite in instance/, tasks in-process, mail to the outbox.
run: install
	$(BIN)/leadflow db upgrade
	$(BIN)/leadflow demo
	BASE_URL=$${BASE_URL:-http://127.0.0.1:$${PORT:-5000}} LEADFLOW_EMBEDDED_SCHEDULER=1 $(BIN)/leadflow run --host 127.0.0.1 --port $${PORT:-5000}

# Needs PostgreSQL and Redis on 127.0.0.1 (see README) and Debian's chromium.
test: install-dev
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python bench/capture.py
