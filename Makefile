# Deep-Learning Recommenders in Production: every entry point of the workshop.
#
# Targets:
#   make help        this list (also what plain `make` prints)
#   make workshop    the main job, end to end in local mode (sets itself up first)
#   make test        the whole test suite, as CI runs it (sets itself up first)
#   make test-fast   the tests that need no TensorFlow, browser or notebook run (well under a minute)
#   make lab         JupyterLab at the repository root, opened on labs/ (solutions/ beside it)
#   make install     create .venv from the pinned lock files (every other target does this first)
#   make labs        rebuild labs/ and solutions/ from source/
#   make check-labs  fail if labs/ or solutions/ drifted from source/
#   make html        the solutions executed at CI size, one HTML page each: artifacts/html/index.html
#   make slides      build the instructor deck, slides/build/deck.html (SLIDES_ARGS=--pdf: also deck.pdf)
#   make lint        ruff on the package, tests, benchmarks and tools
#   make lock        re-resolve requirements/direct.txt into requirements/lock.txt
#   make clean       remove .venv, artifacts/ and caches (not the downloaded data in datasets/cache)
#
# Variables (make VAR=value ..., or the environment):
#   WORKSHOP_SCALE     full (default) or ci: the size make workshop runs the labs at
#   MOVIELENS_DIR      a folder with the MovieLens zips or extracted folders (offline copy; only read)
#   KUBEFLOW_CRDS_DIR  a folder with the Kubeflow CRDs (offline copy; only read)
#   VENV               where the virtual environment goes (default .venv)
#   PYTHON             the Python 3.11 to build it with (default: python3.11, else python3)
#   LAB_ARGS           extra JupyterLab options, e.g. LAB_ARGS="--port 8899 --no-browser"
#   PYTEST_ARGS        extra pytest options, e.g. PYTEST_ARGS="-k crds -x"
#   TEST_WORKERS       parallel pytest workers in make test (default 2; each notebook kernel needs ~1.5 GB)
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSHOP_SCALE ?= full
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
LAB_ARGS ?=
# JupyterLab refuses to start as root (common in containers) unless told to.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: help install workshop test test-fast check-labs labs lab html slides lint lock clean

help:
	@sed -n '2,/^SHELL/{/^SHELL/d;s/^# \{0,1\}//p}' $(MAKEFILE_LIST)

$(STAMP): requirements/lock.txt requirements/no-deps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0] + ": set PYTHON=/path/to/python3.11")'
	@echo "Setting up $(VENV) from requirements/lock.txt (about 2.8 GB; a few minutes the first time) ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/no-deps.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(STAMP)

workshop: $(STAMP)
	$(BIN)/python -m recsys_workshop run --scale $(WORKSHOP_SCALE)

test: $(STAMP)
	@started=$$SECONDS; $(BIN)/ruff check recsys_workshop tests bench tools conftest.py; \
	  $(BIN)/python -m tools.labbuild --check; echo "== lint + labs in sync: $$((SECONDS - started)) s =="
	@started=$$SECONDS; $(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15 $(PYTEST_ARGS); echo "== pytest: $$((SECONDS - started)) s =="
	@started=$$SECONDS; WORKSHOP_SCALE=ci $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --nbval-lax --nbval-cell-timeout=1200 solutions/ $(PYTEST_ARGS); \
	  echo "== nbval (solutions, WORKSHOP_SCALE=ci): $$((SECONDS - started)) s =="

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not tf and not browser and not notebooks" $(PYTEST_ARGS)

check-labs: $(STAMP)
	$(BIN)/python -m tools.labbuild --check

labs: $(STAMP)
	$(BIN)/python -m tools.labbuild

html: $(STAMP)
	$(BIN)/python -m recsys_workshop html --scale ci

slides: $(STAMP)
	$(BIN)/python slides/build.py $(SLIDES_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/labs $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check recsys_workshop tests bench tools conftest.py

# Re-resolve the direct dependencies in a scratch venv and freeze them into requirements/lock.txt.
lock:
	rm -rf .tmp/lockenv && $(PYTHON) -m venv .tmp/lockenv
	.tmp/lockenv/bin/pip install --quiet -r requirements/direct.txt
	{ sed -n '1,2p' requirements/lock.txt; .tmp/lockenv/bin/pip freeze --exclude-editable | grep -v -f <(sed -n 's/==.*//p' requirements/no-deps.txt | sed 's/^/^/') | $(BIN)/python -m tools.lockmarkers requirements/direct.txt; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt && rm -rf .tmp/lockenv

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
