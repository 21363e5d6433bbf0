# Two set-up commands on a fresh machine (see README):
#   make demo   - create .venv, install crystaldos, run the main job on the embedded default
#   make test   - create .venv if needed, run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# torch first, pinned: this machine has a local CPU wheel of 2.13.0; an unpinned
# torch would pull the CUDA build (gigabytes).
TORCH ?= torch==2.13.0

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/crystaldos card --out results/dataset

test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) results
