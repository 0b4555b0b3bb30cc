# Two commands on a fresh machine: `make demo` and `make test`. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP_QUIET := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: all deps demo test test-fast up down status lint bench infra-check clean lock package agent-packages \
	mobility-installer

all: test

# The .venv is installed from the dev lock (the app's and the appliance's closures at their locked
# versions plus the tools), every file checked against its hash.
$(VENV)/.installed: requirements.txt requirements-appliance.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	@set -o pipefail; $(PY) -m pip install -q --require-hashes -r requirements-dev.txt 2>&1 | grep -v "is ignored: it is neither" ; test $${PIPESTATUS[0]} -eq 0
	@set -o pipefail; $(PY) -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

# Regenerate the locks after editing a requirements*.in (uv is pinned in requirements-dev.in). Versions
# already locked are kept unless an .in asks for another; `make lock UPGRADE=--upgrade` moves them all.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(UPGRADE)
lock: $(VENV)/.installed
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-appliance.in -o requirements-appliance.txt
	$(UV_COMPILE) requirements-dev.in -o requirements-dev.txt

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20+ (apt-get install nodejs npm)" >&2; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.devhost/.system-deps: scripts/apt-packages.txt scripts/install-system-deps.sh
	@mkdir -p .devhost
	@scripts/install-system-deps.sh
	@touch $@

# The Azure agents the hydration toolkit installs in a guest, pinned by version and checksum.
.devhost/.agent-packages: scripts/agent-packages.txt scripts/fetch-agent-packages.sh
	@scripts/fetch-agent-packages.sh
	@mkdir -p .devhost
	@touch $@

agent-packages: .devhost/.agent-packages

deps: $(VENV)/.installed node_modules/.installed .devhost/.system-deps .devhost/.agent-packages

# The deployable zip (docs/deploy.md): app files + the locked closure in .python_packages, for a zip
# deploy without a remote build.
package: $(VENV)/.installed .devhost/.agent-packages
	$(PY) scripts/package.py --output dist/app.zip

# The Mobility service installer from the project's agent package (agent/), named as the vendor names
# its installers: dist/Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release.tar.gz. Upload it to the catalog
# (PUT /api/mobility/installers/<name>) to push it to servers of that OS.
MOBILITY_VERSION ?= 9.60.0.0
MOBILITY_OS ?= DEBIAN9-64
mobility-installer: $(VENV)/.installed
	$(PY) scripts/build_mobility_installer.py --version $(MOBILITY_VERSION) --os $(MOBILITY_OS) --out dist

demo: deps
	$(PY) -m devhost demo

# Two pytest workers, a whole test file to one worker (its module's stack and guest image are built once):
# the end-to-end tests mostly wait on the local stack, so two overlap on two cores. TEST_WORKERS=0 runs
# the suite in this process, in file order.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile

test: deps
	$(PY) -m pytest $(PYTEST_PARALLEL)

test-fast: deps
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow"

up: deps
	$(PY) -m devhost up --background

down:
	@if [ -x $(PY) ]; then $(PY) -m devhost down; fi

status: deps
	$(PY) -m devhost status

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared hydration appliance bench functions orchestrators cli agent
	$(VENV)/bin/lint-imports

bench: deps
	$(PY) -m bench

infra-check: deps
	scripts/checkov.sh

clean: down
	rm -rf .devhost dist
