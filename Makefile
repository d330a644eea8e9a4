# Set-up and main entry points. TORCH_SPEC picks the torch build: the default is the CPU wheel;
# GPU users pass e.g. `make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# One stamp per install: the runtime (what `make demo` needs), then each extra set when a target
# needs it (dev: tests and checks; clusters: profile embeddings; docs: the site).
STAMP := $(VENV)/.installed
DEV := $(VENV)/.installed-dev
CLUSTERS := $(VENV)/.installed-clusters
DOCS := $(VENV)/.installed-docs
# The lowest transformers release dps-lens supports, whose cached decoding CI checks too
LOWEST_TRANSFORMERS ?= transformers==5.9.0
LOWEST := .venv-lowest

.PHONY: install wordnet chromium browser-assets demo test test-lowest figures screenshots lint typecheck organisms validate docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(VENV)/.installed-%: $(STAMP)
	$(BIN)/pip install --quiet -e ".[$*]"
	touch $@

install: $(STAMP) $(DEV) $(CLUSTERS) $(DOCS) wordnet chromium

# WordNet for METEOR, offline: Debian's wordnet-base (skipped where it is present or apt is absent;
# elsewhere use `python -m nltk.downloader wordnet` or set DPS_LENS_WORDNET).
wordnet:
	@if [ ! -e /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq wordnet-base >/dev/null || echo "warning: could not install wordnet-base; METEOR tests will skip"; \
	fi

# Chromium draws the static PNG/SVG figures (kaleido) and runs the headless browser tests.
chromium:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && command -v apt-get >/dev/null; then \
		apt-get install -y -qq chromium >/dev/null || echo "warning: could not install chromium; figures are HTML only, browser tests skip"; \
	fi

# The Jupyter widget renderer and require.js, so exported notebooks draw their widgets offline.
BROWSER_ASSETS := .cache/browser
browser-assets:
	@if [ ! -e $(BROWSER_ASSETS)/embed-amd.js ] && command -v npm >/dev/null; then \
		mkdir -p $(BROWSER_ASSETS)/pack && (cd $(BROWSER_ASSETS)/pack && \
		npm pack --silent @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.8 >/dev/null && \
		tar xzf jupyter-widgets-html-manager-1.0.15.tgz package/dist/embed-amd.js && \
		tar xzf requirejs-2.3.8.tgz package/require.js && \
		mv package/dist/embed-amd.js package/require.js ..); rm -rf $(BROWSER_ASSETS)/pack; \
	fi; [ -e $(BROWSER_ASSETS)/embed-amd.js ] || echo "warning: npm unavailable; the widget-export browser test will skip"

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens demo

test: $(DEV) $(CLUSTERS) wordnet chromium browser-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# Cached decoding and every family's exactness under the lowest supported transformers (the
# main environment has the newest release the project allows), in a second small environment.
test-lowest:
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install --quiet $(TORCH_SPEC)
	$(LOWEST)/bin/pip install --quiet -e ".[dev]" "$(LOWEST_TRANSFORMERS)"
	HF_HUB_OFFLINE=1 $(LOWEST)/bin/python -m pytest -q tests/test_kv_cache.py tests/test_model_families.py tests/test_steering_generate.py

# Every figure of the organism study (and of the SmolLM2 + LaMP-7 study when ../shared is there),
# rebuilt only where the saved results changed: figures/<study>/*.html, *.png, *.svg.
figures: $(STAMP) chromium
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens figures --study figures/organism.toml
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens figures --study figures/organism-clusters.toml
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens figures --study figures/organism-generic.toml
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens figures --study figures/lamp.toml
	@if [ -d ../shared/models ]; then \
		HF_HUB_OFFLINE=1 $(BIN)/dps-lens figures --study figures/smollm2-lamp7.toml && \
		HF_HUB_OFFLINE=1 $(BIN)/dps-lens figures --study figures/smollm2-lamp-clusters.toml; \
	else echo "../shared not found: skipping the SmolLM2 studies"; fi

# What headless Chromium draws in the browser tests, kept in figures/screenshots/ to look at.
screenshots: $(DEV) chromium browser-assets
	DPS_LENS_SCREENSHOTS=figures/screenshots HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_browser.py

organisms: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism train --name organism-free
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism train --name organism-planted
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism train --name organism-groups

validate: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism validate --model organism-planted --out runs/validate/planted
	HF_HUB_OFFLINE=1 $(BIN)/dps-lens organism validate --model organism-free --out runs/validate/free

# Lint, format and type checks (CI runs all three before the tests).
lint: $(DEV)
	$(BIN)/ruff check dps_lens tests benchmarks
	$(BIN)/ruff format --check dps_lens tests benchmarks

typecheck: $(DEV)
	$(BIN)/pyright

# The documentation site (mkdocs-material + mkdocstrings), built offline into site/; any warning fails.
docs: $(DOCS)
	NO_MKDOCS_2_WARNING=1 HF_HUB_OFFLINE=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(LOWEST) build *.egg-info .pytest_cache .ruff_cache .cache
