# Two commands on a fresh machine: `make run` (set up and serve) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: setup setup-run run migrate test lint format bench demo

# `make run` installs only what serving needs (requirements.txt); `make demo` adds
# a local Dask cluster (requirements-frameworks.txt); `make setup` and everything
# that tests add the test tools, Ray and Playwright (requirements-dev.txt).
setup-run: $(RUN_STAMP)

$(RUN_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(RUN_STAMP)

$(DEMO_STAMP): $(RUN_STAMP) requirements-frameworks.txt
	$(PY) -m pip install --quiet -r requirements-frameworks.txt
	touch $(DEMO_STAMP)

setup: $(STAMP)

$(STAMP): $(DEMO_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

migrate: setup-run
	$(PY) manage.py migrate --noinput

run: setup-run
	$(PY) manage.py serve

# The dashboard populated: a simulated fleet, apps, traces, logs and a local Dask
# cluster, all on loopback (examples/unified_dashboard_demo.py --help for options).
# The demo is the server's: it runs from this checkout (PYTHONPATH), as `serve` does.
demo: $(DEMO_STAMP)
	PYTHONPATH=$(CURDIR) $(PY) examples/unified_dashboard_demo.py $(DEMO_ARGS)

test: setup
	$(PY) -m pytest --ignore=tests/browser
	# Browser tests in a process of their own: Playwright's sync API and the
	# asyncio tests must not share one.
	$(PY) -m pytest tests/browser

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	# The layers: core <- activity <- domains <- sollol_site (pyproject.toml).
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) bench/run.py
