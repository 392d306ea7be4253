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

demo: $(STAMP)
	$(BIN)/python -m examples.shop

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest
	SEAWALL_DEMO_ORDERS=40 $(BIN)/python -m examples.shop

# Every benchmark, one after the other, collected in benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
