# Two commands for a fresh clone:  `make run` (dashboard)  and  `make test` (test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/streamlit run app.py

test: setup chromium
	SIGNSEG_OFFLINE=1 $(BIN)/python -m pytest

# Figure export (kaleido) and browser tests need Chromium; as root, install Debian's.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not found: export and browser tests will be skipped"

bench: setup
	$(BIN)/python -m signseg_core bench

clean:
	rm -rf $(VENV) .pytest_cache
