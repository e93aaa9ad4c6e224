# Deep-Learning Recommenders in Production: every entry point of the workshop.
#   make workshop   the main job, end to end in local mode (sets itself up first)
#   make test       the whole test suite, as CI runs it (sets itself up first)
#   make lab        JupyterLab on the labs
#   make labs       rebuild labs/ and solutions/ from source/
#   make slides     build the instructor deck, slides/build/deck.html (SLIDES_ARGS=--pdf: also deck.pdf)
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSHOP_SCALE ?= full
PYTEST_ARGS ?=

.PHONY: help install workshop test check-labs labs lab slides lint lock clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

$(STAMP): requirements/lock.txt requirements/no-deps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0] + ": set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/no-deps.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(STAMP)

workshop: $(STAMP)
	$(BIN)/python -m recsys_workshop run --scale $(WORKSHOP_SCALE)

test: $(STAMP)
	$(BIN)/ruff check recsys_workshop tests bench conftest.py
	$(BIN)/python -m recsys_workshop.labbuild --check
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	WORKSHOP_SCALE=ci $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=1200 solutions/ $(PYTEST_ARGS)

check-labs: $(STAMP)
	$(BIN)/python -m recsys_workshop.labbuild --check

labs: $(STAMP)
	$(BIN)/python -m recsys_workshop.labbuild

slides: $(STAMP)
	$(BIN)/python slides/build.py $(SLIDES_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab labs/

lint: $(STAMP)
	$(BIN)/ruff check recsys_workshop tests bench

# Re-resolve the direct dependencies in a scratch venv and freeze them into requirements/lock.txt.
lock:
	rm -rf .tmp/lockenv && $(PYTHON) -m venv .tmp/lockenv
	.tmp/lockenv/bin/pip install --quiet -r requirements/direct.txt
	{ sed -n '1,2p' requirements/lock.txt; .tmp/lockenv/bin/pip freeze --exclude-editable | grep -v -f <(sed -n 's/==.*//p' requirements/no-deps.txt | sed 's/^/^/'); } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt && rm -rf .tmp/lockenv

clean:
	rm -rf $(VENV) artifacts .pytest_cache
