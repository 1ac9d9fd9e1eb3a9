# Every target sets up what it needs: a virtual environment in .venv with the CPU build of torch
# (pinned: an unpinned torch would pull a multi-GB CUDA build), the project, and its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help install test bench search lint docs docs-check mutate clean

help:
	@echo "make search  - run the demo search (preset cifar-demo) on the bundled real CIFAR-10 subset (NAS-Bench-201 space)"
	@echo "make test    - set up .venv and run the test suite"
	@echo "make bench   - run the pytest-benchmark suites (writes .benchmarks/)"
	@echo "make lint    - ruff"
	@echo "make docs    - build the documentation site (guides + API reference) into site/, strict"
	@echo "make docs-check - build it and open it in headless Chromium (skips the browser if absent)"
	@echo "make mutate  - mutation testing of the estimators, conditions, methods and solvers (by hand; hours on 2 cores)"

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[apps,test,peers,tpe,dev,docs]" "$(TORCH)"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

# The demo search: the cifar-cpu search on the 10,000 real CIFAR-10 images shipped with the package (16x16),
# NAS-Bench-201 space (preset cifar-demo; nothing to download).
SEARCH_OUT ?= runs/search-demo
SEARCH_SEED ?= 0
search: $(STAMP)
	$(PY) -m applications.nas.search --preset cifar-demo --seed $(SEARCH_SEED) --out $(SEARCH_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check hypergrad applications tests benchmarks scripts
	$(VENV)/bin/mypy hypergrad --ignore-missing-imports

# Strict: a broken link, an unknown reference or a docstring mkdocstrings cannot collect fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q

docs-check: $(STAMP)
	$(PY) -m pytest -q -rs tests/test_docs_site.py

# Mutation testing (mutmut; settings in pyproject.toml [tool.mutmut]). One thread per test process: torch's
# thread pool does not survive mutmut's fork. MUTANTS narrows the run, e.g. MUTANTS='hypergrad.solvers.cg.*'.
MUTANTS ?=
mutate: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks *.egg-info site mutants
