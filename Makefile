# Every target sets up what it needs: a fresh machine runs `make demo` or `make test` and nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-dev
# Typed code we hold to mypy --strict: the core, every plugin that exists yet, and example plugins.
TYPED := crmphone bench $(wildcard plugins/*/src plugins/*/crmphone_* examples/*/src examples/*/*.py)

.PHONY: demo test bench soak docs lint format setup clean

setup: $(STAMP)

PLUGINS := plugins/crmphone-salesforce plugins/crmphone-zendesk

$(STAMP): pyproject.toml examples/webhook-adapter/pyproject.toml $(PLUGINS:%=%/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,phone]' -e 'examples/webhook-adapter[test]' \
		$(PLUGINS:%=-e %)
	@touch $(STAMP)

# The page tests drive Debian's Chromium (Playwright with executable_path); installed when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

demo: $(STAMP)
	$(BIN)/crmphone demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict $(TYPED)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: lint docs $(CHROMIUM)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# The connector under calls for DURATION seconds: memory, descriptors, sockets and tasks must stay
# flat (bench/results/soak.json; exit 1 when they grow).
DURATION ?= 300
soak: $(STAMP)
	$(BIN)/python -m bench.soak --duration $(DURATION)

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache .hypothesis
