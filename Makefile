# Two commands on a fresh machine: `make run` (set up and serve) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run migrate test lint format bench demo

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

migrate: setup
	$(PY) manage.py migrate --noinput

run: setup
	$(PY) manage.py serve

# The dashboard populated: a simulated fleet, apps, traces, logs and a local Dask
# cluster, all on loopback (examples/unified_dashboard_demo.py --help for options).
demo: setup
	$(PY) examples/unified_dashboard_demo.py $(DEMO_ARGS)

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
