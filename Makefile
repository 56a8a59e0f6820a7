# calbridge: the two commands of the README, and their parts.
#   make run   install into ./.venv, create the SQLite database, load demo data, serve on :8080
#   make test  install everything incl. test tools, then ruff, mypy, import contracts, pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: readme-config run test install install-test lint typecheck pytest bench clean postgres node-deps chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

install-test: $(TSTAMP)

run: install
	$(BIN)/calbridge demo
	$(BIN)/calbridge serve

# PostgreSQL is part of the suite: start the local cluster if it is down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432

# ical.js (the parser Thunderbird uses) for the feed parser checks, from the npm registry.
node-deps:
	cd tests/feeds/icaljs && npm ci --no-audit --no-fund --silent

# Debian's Chromium for the console's end-to-end test (never a downloaded browser build).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@/usr/bin/chromium --version

lint: install-test
	$(BIN)/ruff check bridge radicale_plugins tests bench scripts
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy

pytest: install-test postgres node-deps chromium
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: install-test postgres
	$(BIN)/python bench/run_all.py

# The config reference in README.md, generated from bridge/config.py.
readme-config: install
	$(BIN)/python scripts/readme_config.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
