# Bulwark. On a fresh machine `make test` and `make demo` install what is missing first:
# .venv (pip, from pyproject.toml) and node_modules (npm ci, from package-lock.json).
# Each install re-runs only when its manifest changed, so a second run costs nothing.

SHELL := bash
.DEFAULT_GOAL := test

PYTHON ?= python3
NPM ?= npm
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8545
# Two workers, each with its own Anvil; a test file stays on one worker (its chain fixtures).
PYTEST_ARGS ?= -n 2 --dist loadfile
ANVIL := node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

VENV_STAMP := $(VENV)/.stamp
NODE_STAMP := node_modules/.stamp
WEB_BUNDLE := web/dist/app.js
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bootstrap test demo bench compile abi node web clean distclean

bootstrap: $(VENV_STAMP) $(NODE_STAMP) $(WEB_BUNDLE)

$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing Python packages into $(VENV)"
	@# -qq: errors only (plain -q still prints pip's configuration warnings)
	@$(PY) -m pip install -qq --disable-pip-version-check -e '.[dev]'
	@touch $@

# npm keeps node_modules/.package-lock.json in step with what it installed; when that is not
# older than package-lock.json, the tree is current (e.g. installed before this stamp existed).
$(NODE_STAMP): package.json package-lock.json
	@if [ -f node_modules/.package-lock.json ] && \
	    ! [ package-lock.json -nt node_modules/.package-lock.json ] && \
	    [ -x $(ANVIL) ]; then \
	    echo "node_modules is current"; \
	else \
	    echo "installing node_modules (npm ci)"; \
	    $(NPM) ci --no-audit --no-fund --loglevel=error; \
	fi
	@touch $@

# The trading page's script: web/src bundled by esbuild (package.json's build:web) when it changed.
$(WEB_BUNDLE): $(wildcard web/src/*.js) $(NODE_STAMP)
	@echo "bundling the page's script into $@ (esbuild)"
	@$(NPM) run --silent build:web

web: $(WEB_BUNDLE)

# Debian's Chromium for the page's tests (tests/test_web.py); Playwright drives it and downloads
# no browser of its own.
$(CHROMIUM):
	@echo "installing chromium (apt-get)"
	@$(SUDO) apt-get update -qq
	@DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

test: bootstrap $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: bootstrap
	$(VENV)/bin/bulwark demo

bench: bootstrap
	$(PY) -m bench

compile: bootstrap
	$(PY) -m bulwark.devnet.compiler

# The ABIs and bytecode the package ships (bulwark/core/abi.json, bytecode.json), rewritten from a
# fresh build; commit them with every change to a contract (tests/test_install.py fails until they
# match).
abi: bootstrap
	$(PY) -m bulwark.devnet.compiler --abis

node: bootstrap
	$(ANVIL) --port $(PORT)

clean:
	rm -rf build out cache .pytest_cache .hypothesis web/dist web-screenshots

distclean: clean
	rm -rf $(VENV) node_modules
