# The two commands: `make demo` and `make test`. Each bootstraps .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

# (Re)install only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The FTGO system: 9 service processes under `seawall up`, 2,000 orders, faults injected.
# SEAWALL_DEMO_TRANSPORT=nats://127.0.0.1:4222 runs the same system on NATS JetStream.
demo: $(STAMP)
	$(BIN)/python -m examples.ftgo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest
	SEAWALL_DEMO_ORDERS=200 $(BIN)/python -m examples.ftgo

# Every benchmark, one after the other, collected in benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
