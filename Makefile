# Kopilka: `make run` starts everything, `make test` runs the whole suite against real services.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml sdk/python/pyproject.toml deploy/dev/system-deps.sh | cksum | cut -d' ' -f1)

.PHONY: run test unit lint format bench bench-ingest bench-outbound profile-worker profile-ingress clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml deploy/dev/system-deps.sh
	@deploy/dev/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) ..."
	@$(BIN)/pip install -q --upgrade pip >/dev/null
	@$(BIN)/pip install -q -e '.[dev]'
	@$(BIN)/pip install -q -e sdk/python  # the Python SDK, tested in the same run
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)  ## the whole local stack, supervised; WORKERS=N stream workers (default 1)
	@$(BIN)/kopilka run --workers $(or $(WORKERS),1) $(RUN_ARGS)

test: $(STAMP)  ## the whole suite: unit tests, then end-to-end against real Kafka + Postgres
	@$(BIN)/pytest

unit: $(STAMP)  ## only the fast, pure tests
	@$(BIN)/pytest -m "not connected"

lint: $(STAMP)  ## ruff, the direction of imports (import-linter), strict types (mypy, see pyproject)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/lint-imports
	@$(BIN)/mypy

format: $(STAMP)
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

bench: $(STAMP)  ## one stack, one table: ingress vs bare aiohttp, e2e with 1 and 2 workers, restart, ...
	@$(BIN)/python tests/perf/bench.py $(ARGS)

bench-ingest: $(STAMP)  ## ingest latency/throughput with an aiohttp client (ARGS="--edge": signed + Redis)
	@$(BIN)/python tests/perf/ingest_bench.py $(ARGS)

bench-outbound: $(STAMP)  ## webhook -> shop callback latency; recovery after the callback was down
	@$(BIN)/python tests/perf/outbound_bench.py $(ARGS)

profile-worker: $(STAMP)  ## py-spy profile of the worker under end-to-end load -> .data/bench/
	@$(BIN)/python tests/perf/pyspy_profile.py worker $(ARGS)

profile-ingress: $(STAMP)  ## the same for the ingress
	@$(BIN)/python tests/perf/pyspy_profile.py ingress $(ARGS)

clean:  ## remove the virtualenv and every byte of local data (Kafka, Postgres, logs)
	rm -rf $(VENV) .data .pytest_cache
	rm -rf /var/tmp/kopilka-$(shell printf '%s' "$(CURDIR)" | sha1sum | cut -c1-10)
