# `make study` runs the demo study, `make test` the tests; both create .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: study test lint clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/vlsm data synth
	$(VENV)/bin/vlsm data sheet synth_polyp synth_skin synth_ultrasound synth_xray synth_polyp_b synth_polyp_c synth_polyp_ref synth_shapes --out outputs/medshapes.png
	@echo "MedShapes written under outputs/data; contact sheet: outputs/medshapes.png"

test: $(STAMP)
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check vlsm_lib tests

clean-venv:
	rm -rf $(VENV)
