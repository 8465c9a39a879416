# Two commands for a fresh clone:  `make run` (dashboard)  and  `make test` (test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/streamlit run app.py

test: setup
	SIGNSEG_OFFLINE=1 $(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m signseg_core bench

clean:
	rm -rf $(VENV) .pytest_cache
