# Everything the project needs is installed from its own files into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all bench docs examples clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/poso-sim solve --case manchester
	$(BIN)/poso-sim run scenario-1

test: $(STAMP)
	@$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# long runs that still fit CI: the 1 000-case campaigns, the bias sweep, other local optima
test-slow: $(STAMP)
	@$(BIN)/python -m pytest -q -m slow -k 'not best_fit'; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test-all: $(STAMP)
	@$(BIN)/python -m pytest -q -m ''; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

examples: $(STAMP)
	$(BIN)/python examples/run_examples.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
