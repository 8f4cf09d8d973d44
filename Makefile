# Tap — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test faults load lint bench install env stop clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: web (gunicorn), Celery worker, beat and the outbox relay; embedded PostgreSQL/Redis
run: $(STAMP)
	$(PY) -m tap.devenv run

## test: the whole suite against real PostgreSQL and Redis
test: $(STAMP)
	$(PY) -m tap.devenv test $(PYTEST_ARGS)

## faults: only the fault tests (Redis, worker, PostgreSQL, SMTP and the AI API broken on purpose)
faults: $(STAMP)
	$(PY) -m tap.devenv test -m faults $(PYTEST_ARGS)

## load: 200 participants x 10 turns on the production server while a creator browses (LOAD_ARGS=)
load: $(STAMP)
	$(PY) -m tap.devenv exec $(PY) -m bench.load $(LOAD_ARGS)

## lint: ruff (lint + format check) and the project's own rules
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tap.lint

## bench: every benchmark in bench/, a table, and bench/results/latest.json
bench: $(STAMP)
	$(PY) -m tap.devenv exec $(PY) -m bench

env: $(STAMP)
	$(PY) -m tap.devenv env

stop:
	$(PY) -m tap.devenv stop

clean:
	$(PY) -m tap.devenv clean
