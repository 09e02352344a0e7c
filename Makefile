# IoT Center for Python. `make demo` runs the whole system; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit influxdb lint format bench setup assets browser wheel clean help

help:
	@echo "make demo     - start InfluxDB, IoT Center and a virtual device; print where to look"
	@echo "make test     - install what is needed and run every test (unit + integration)"
	@echo "make influxdb - print the path of an influxd 2.x binary (builds and caches it if needed)"
	@echo "make lint     - ruff check and format check"
	@echo "make bench    - run the benchmarks and print their figures"
	@echo "make wheel    - build dist/*.whl for installing on a Pi (see deploy/README.md)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,dev]'
	@touch $(STAMP)

setup: $(STAMP)

# Front-end assets (Bootstrap, Chart.js, Leaflet) from npm, served by the app itself: no CDN.
ASSETS_STAMP := node_modules/.installed
$(ASSETS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(ASSETS_STAMP)

assets: $(ASSETS_STAMP)

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

influxdb:
	@bash scripts/get-influxd.sh

test: $(STAMP) assets browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@INFLUXD="$$(bash scripts/get-influxd.sh)" && export INFLUXD && \
	  $(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest -m "not integration"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: $(STAMP) assets
	@INFLUXD="$$(bash scripts/get-influxd.sh)" && export INFLUXD && \
	  $(PY) -m iot_center.demo

bench: $(STAMP)
	@INFLUXD="$$(bash scripts/get-influxd.sh)" && export INFLUXD && \
	  $(PY) -m bench

# The wheel that deploy/'s first-boot files install on a Pi (copy dist/*.whl to the boot partition).
wheel: $(STAMP)
	$(PY) -m pip wheel --quiet --no-deps -w dist .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache test-artifacts .demo
