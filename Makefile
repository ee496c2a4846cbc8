# Everything the project needs is installed from its own files into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all bench docs examples clean

# tox.ini has one env per target below (tox -e test, -e demo, -e docs ...) running the same commands.
# A first install takes a few minutes: pip prints each package it fetches, and .ci/with_progress.py says the
# time while a step prints nothing (creating the venv, pip's "Installing collected packages").
PROGRESS := $(PY) .ci/with_progress.py
$(STAMP): pyproject.toml
	@echo "== installing poso-sim and its dependencies into $(VENV) (first time: a few minutes)"
	$(PROGRESS) "creating $(VENV)" -- $(PY) -m venv $(VENV)
	$(PROGRESS) "updating pip" -- $(BIN)/python -m pip install --progress-bar off --upgrade pip
	$(PROGRESS) "installing packages" -- $(BIN)/python -m pip install --progress-bar off -e '.[test,docs]'
	touch $(STAMP)
	@echo "== installed; to use poso-sim from your shell: . $(VENV)/bin/activate"

# the first run solves two plans (8-14 s of CPU each, with progress lines); later runs read the cache
demo: $(STAMP)
	$(BIN)/poso-sim solve --case manchester
	$(BIN)/poso-sim run scenario-1

# .ci/run_pytest.py is pytest with exit status 5 ("no tests collected") counted as success
test: $(STAMP)
	$(BIN)/python .ci/run_pytest.py -q

# long runs that still fit CI: the 1 000-case campaigns, the bias sweep, other local optima
test-slow: $(STAMP)
	$(BIN)/python .ci/run_pytest.py -q -m slow

test-all: $(STAMP)
	$(BIN)/python .ci/run_pytest.py -q -m ''

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

examples: $(STAMP)
	$(BIN)/python examples/run_examples.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
