# The two commands a newcomer needs:
#   make serve   - set up, register the demo models if absent, serve the demo classifier
#   make test    - set up (including the Phoenix trace backend, Prometheus and Chromium used by the e2e
#                  tests), run every test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vigil-installed
PHOENIX_VENV := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed
PHOENIX_SPEC ?= arize-phoenix
HOST ?= 127.0.0.1
PORT ?= 3000
PYTEST_ARGS ?=
# Debian's Prometheus, unpacked into the repo (no service, no root needed beyond apt's cache)
PROM_DIR := .tools/prometheus
PROM_BIN := $(PROM_DIR)/usr/bin/prometheus
# Debian's Chromium for the dashboard's browser tests (Playwright drives it; no browser download)
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export BENTOML_DO_NOT_TRACK := True

.PHONY: serve test setup phoenix prometheus chromium bench planted-bugs mutate lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

phoenix: $(PHOENIX_STAMP)

$(PHOENIX_STAMP):
	$(PY) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install -q --upgrade pip
	$(PHOENIX_VENV)/bin/python -m pip install -q "$(PHOENIX_SPEC)"
	touch $(PHOENIX_STAMP)

prometheus: $(PROM_BIN)

$(PROM_BIN):
	mkdir -p $(PROM_DIR)
	cd $(PROM_DIR) && (apt-get download prometheus 2>/dev/null || (apt-get update -qq && apt-get download prometheus))
	cd $(PROM_DIR) && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb
	$(PROM_BIN) --version | head -1

chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium
	$(CHROMIUM) --version

serve: $(STAMP)
	$(BIN)/vigil demo --if-missing
	$(BIN)/vigil serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(PHOENIX_STAMP) $(PROM_BIN) $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/serving_overhead.py

# Plant each bug the tests exist for in a copy of the tree and check that they fail (not part
# of `make test`: a few minutes). PLANTED_ARGS="--runs 3 --only js-factor-9,outbox-lease"
PLANTED_ARGS ?=
planted-bugs: $(STAMP)
	$(BIN)/python benchmarks/planted_bugs.py $(PLANTED_ARGS)

# Mutation testing (pyproject's [tool.mutmut]: monitoring/stats, intake, store against their unit
# tests); not part of `make test`: tens of minutes. `mutmut results` lists the survivors.
mutate: $(STAMP)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/python -m pip install -q "mutmut>=3.8,<4"
	$(BIN)/mutmut run
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .pytest_cache
