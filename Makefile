# valuestream: `make run` brings everything up, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv run test bench lint kafka-up kafka-down schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

kafka-up:
	@deploy/kafka/kafka.sh up

kafka-down:
	@deploy/kafka/kafka.sh down

run: venv
	@deploy/run.sh

test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest

# The end-to-end benchmark (docs/benchmarks.md); BENCH_ARGS="--events 50000" for a short run.
bench: venv
	@servers=$${KAFKA_BOOTSTRAP_SERVERS:-$$(deploy/kafka/kafka.sh up)} && [ -n "$$servers" ] && \
		KAFKA_BOOTSTRAP_SERVERS=$$servers $(BIN)/python -m benchmarks.endtoend $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .

schemas: venv
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache
