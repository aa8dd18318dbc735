# Each target sets up what it needs: a virtual environment with the project and its tools.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit chaos lint fmt typecheck venv clean up bench lock screenshots

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet -e clients/python  # the client library, for its tests
	touch $(STAMP)

venv: $(STAMP)

## Run a small batch end to end on this machine: no servers, no configuration.
demo: $(STAMP)
	$(BIN)/imagegen demo

## The import contracts, then the whole test suite against real Postgres, Redis, an S3 server
## and the simulator.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	./scripts/ensure-services.sh
	./scripts/ensure-browser.sh
	$(BIN)/pytest

## 500 jobs through real workers that keep being killed, while S3 is unreachable for 60 s,
## Redis is stopped for 60 s, polls answer 5xx for 30 s, Redis is flushed, Postgres restarted,
## and the provider is hostile; checks at rest and prints what was lost (must be nothing).
chaos: $(STAMP)
	./scripts/ensure-services.sh
	$(BIN)/python -m tests.chaos --jobs 500

## Benchmarks, each against a baseline measured in the same run (about 9 minutes on 2
## cores): prints the table, writes bench/results/ and the table in docs/benchmarks.md.
## BENCH_ARGS="--quick" for small sizes, BENCH_ARGS="transfer" for one benchmark.
bench: $(STAMP)
	./scripts/ensure-services.sh
	$(BIN)/python -m bench run $(BENCH_ARGS)

## Only the fast tests that need no servers.
unit: $(STAMP)
	$(BIN)/pytest tests/unit

## ruff: the lint rules and the formatting `make fmt` applies; import-linter: the direction of
## every import is the architecture's (pyproject.toml, [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

## requirements.lock, the image's dependencies pinned with hashes, from pyproject.toml (after a
## change of dependencies; tests/unit/test_lock.py fails until it is run).
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --extra flower --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

## Refresh the README's screenshots of the dashboard (the browser tests, writing into
## docs/screenshots/ instead of a temporary folder).
screenshots: $(STAMP)
	./scripts/ensure-services.sh
	./scripts/ensure-browser.sh
	IMAGEGEN_TEST_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/browser

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-output .imagegen .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

## The service-mode stack with Docker Compose (copy .env.example to .env first).
up:
	docker compose up -d --build
