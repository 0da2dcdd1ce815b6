# antflow's front door: every target installs what it needs into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
MATRIX ?= 3.10 3.11 3.12 3.13
PYTEST_ARGS ?=
EXTRAS ?= dev,bench

.PHONY: help venv test test-matrix lint typecheck dist bench profile clean

help:
	@echo "make test | test-matrix | lint | typecheck | dist | bench | profile | clean"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# One virtual environment per minor version, each from the newest pyenv build of it.
test-matrix:
	@status=0; ran=0; \
	for v in $(MATRIX); do \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.* 2>/dev/null | sort -V | tail -n 1); \
	  if [ -z "$$py" ] || [ ! -x "$$py/bin/python3" ]; then \
	    echo "test-matrix: Python $$v is not installed under $(PYENV_ROOT)/versions: skipped"; continue; \
	  fi; \
	  echo "=== Python $$v ($$py)"; ran=$$((ran+1)); \
	  $(MAKE) --no-print-directory test PYTHON=$$py/bin/python3 VENV=.venv-$$v EXTRAS=test || status=1; \
	done; \
	if [ $$ran -eq 0 ]; then echo "test-matrix: no Python of $(MATRIX) found"; exit 1; fi; \
	exit $$status

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check antflow tests

typecheck: $(STAMP)
	$(PY) -m mypy

dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

bench: $(STAMP)
	$(PY) perf/run.py

profile: $(STAMP)
	$(PY) perf/profile.py

clean:
	rm -rf $(VENV) .venv-* dist build perf/results perf/.venv-* .pytest_cache .mypy_cache .ruff_cache
