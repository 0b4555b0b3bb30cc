# Two commands on a fresh machine: `make demo` and `make test`. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP_QUIET := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: all deps demo test test-fast up down status lint bench infra-check clean

all: test

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	@set -o pipefail; $(PY) -m pip install -q -r requirements-dev.txt 2>&1 | grep -v "is ignored: it is neither" ; test $${PIPESTATUS[0]} -eq 0
	@$(PY) -m pip install -q --no-deps -e . $(PIP_QUIET)
	@touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20+ (apt-get install nodejs npm)" >&2; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.devhost/.system-deps: scripts/apt-packages.txt scripts/install-system-deps.sh
	@mkdir -p .devhost
	@scripts/install-system-deps.sh
	@touch $@

deps: $(VENV)/.installed node_modules/.installed .devhost/.system-deps

demo: deps
	$(PY) -m devhost demo

test: deps
	$(PY) -m pytest

test-fast: deps
	$(PY) -m pytest -m "not slow"

up: deps
	$(PY) -m devhost up --background

down:
	@if [ -x $(PY) ]; then $(PY) -m devhost down; fi

status: deps
	$(PY) -m devhost status

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared hydration appliance bench functions orchestrators cli
	$(VENV)/bin/lint-imports

bench: deps
	$(PY) -m bench

infra-check: deps
	scripts/checkov.sh

clean: down
	rm -rf .devhost
