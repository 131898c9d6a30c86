# `make study` runs the demo study, `make test` the tests (`make test-fast` the quick ones);
# each creates .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: study test test-fast lint rehearsal clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The demo: two single-threaded Dask workers keep both cores busy while kernels start.
study: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/vlsm run params/demo --executor dask --workers 2
	@echo "open $(CURDIR)/outputs/index.html"

# The paper suite rehearsed, unchanged, at miniature scale: its 11 datasets from fakes of their
# downloads, every study of params/paper at tiny size, random weights, one epoch, then one
# paper-size finetune of each VLSM (vlsm rehearse --help; docs/gpus.md).
rehearsal: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/vlsm rehearse

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The tests not marked slow (no kernels, Dask clusters, Chromium, whole notebooks or paper-size
# models).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check vlsm_lib tests benchmarks
	$(VENV)/bin/ruff format --check vlsm_lib tests benchmarks

clean-venv:
	rm -rf $(VENV)
