# Two commands on a fresh machine:
#   make demo   generate the demo pair, run the whole pipeline, print TRE per stage
#   make test   run the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
DEMO   ?= demo

.PHONY: install demo test clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(DEMO)/data/truth.npz: $(VENV)/.installed
	$(BIN)/python -m snakestream.demo $(DEMO)/data

demo: $(DEMO)/data/truth.npz
	$(BIN)/snakestream run config/demo.yaml --cores $(CORES)
	$(BIN)/python scripts/demo_tre.py $(DEMO)/data/truth.npz $(DEMO)/results
	@echo "QC report: $(DEMO)/results/report.html"

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

clean-demo:
	rm -rf $(DEMO)
