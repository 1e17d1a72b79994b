# The two commands a new user needs: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev bench translations

$(BIN)/leadflow: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

MO := translations/fr/LC_MESSAGES/messages.mo
$(MO): translations/fr/LC_MESSAGES/messages.po $(BIN)/leadflow
	$(BIN)/pybabel compile -d translations --statistics

$(VENV)/.dev: $(BIN)/leadflow package.json
	$(BIN)/pip install -q -e '.[dev]'
	npm install --no-audit --no-fund --silent
	touch $@

install: $(BIN)/leadflow $(MO)
install-dev: $(VENV)/.dev $(MO)

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

# After changing UI strings: refresh the catalogue, translate the new French
# entries in translations/fr/LC_MESSAGES/messages.po, then `make install`.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k N_ -k _l -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations
	$(BIN)/pybabel compile -d translations
