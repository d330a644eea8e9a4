# Set-up and main entry points. TORCH_SPEC picks the torch build: the default is the CPU wheel;
# GPU users pass e.g. `make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install wordnet demo test lint organisms validate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) wordnet

# WordNet for METEOR, offline: Debian's wordnet-base (skipped where it is present or apt is absent;
# elsewhere use `python -m nltk.downloader wordnet` or set DPS_LENS_WORDNET).
wordnet:
	@if [ ! -e /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq wordnet-base >/dev/null || echo "warning: could not install wordnet-base; METEOR tests will skip"; \
	fi

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens demo

test: $(STAMP) wordnet
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

organisms: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism train --name organism-free
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism train --name organism-planted

validate: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism validate --model organism-planted --out runs/validate/planted
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism validate --model organism-free --out runs/validate/free

lint: $(STAMP)
	$(BIN)/ruff check dps_lens tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
