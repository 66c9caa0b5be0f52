# Two commands on a fresh machine (Python 3.10+ and pip):  make demo   |   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test env env-test benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# stamps: reinstall when pyproject.toml changes
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[tf,test]"
	touch $@ $(VENV)/.core

env: $(VENV)/.core
env-test: $(VENV)/.test

demo: env  ## demo data → four notebooks (papermill) → $(RUN_DIR)/submission.csv + local score
	$(BIN)/birdclef demo --run-dir $(RUN_DIR)

test: env-test  ## the test suite (what CI runs)
	$(BIN)/python -m pytest -q

benchmark: env
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs
