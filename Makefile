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
FRESH_TARGETS ?= test
MINUTES ?= 10
FUZZ_ARGS ?=

.PHONY: help venv test test-matrix fuzz fresh-clone lint typecheck dist bench profile loadtest clean

help:
	@echo "make test | test-matrix | fuzz | fresh-clone | lint | typecheck | dist | bench | profile | loadtest | clean"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# One virtual environment per minor version (.venv-3.X), each from the newest pyenv build of it;
# `make test-matrix MATRIX=3.12 PYTEST_ARGS="tests/test_future.py -q"` for one version and file.
test-matrix:
	$(PYTHON) scripts/test_matrix.py --pyenv-root $(PYENV_ROOT) --versions $(MATRIX) -- $(PYTEST_ARGS)

# The property tests on random schedules, round after round, for MINUTES (FUZZ_ARGS: e.g. -k wide).
fuzz: $(STAMP)
	$(PY) scripts/fuzz.py --minutes $(MINUTES) $(FUZZ_ARGS)

# The committed HEAD cloned into a temporary folder, then `make $(FRESH_TARGETS)` there.
fresh-clone:
	$(PYTHON) scripts/fresh_clone_check.py $(FRESH_TARGETS)

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
	$(PY) perf/scaleout.py
	$(PY) perf/accounting.py

profile: $(STAMP)
	$(PY) perf/profile.py

# A real service under wrk and h2load (installed with apt-get when missing); LOADTEST_QUICK=1: < 1 min.
loadtest: $(STAMP)
	$(PY) scripts/loadtest.py

clean:
	rm -rf $(VENV) .venv-* dist build perf/results perf/.venv-* .pytest_cache .mypy_cache .ruff_cache
