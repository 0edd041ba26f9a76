# The two quick-start commands (README): `make run` and `make test`.
PY := .venv/bin/python

.PHONY: run test lint setup docs bench clean

run:
	@scripts/setup.sh run
	$(PY) -m telemetry run

test:
	@scripts/setup.sh test
	$(PY) -m ruff check telemetry tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest

lint:
	$(PY) -m ruff check telemetry tests benchmarks
	$(PY) -m mypy

setup:
	@scripts/setup.sh test

docs:
	$(PY) -m telemetry.config.docs > docs/configuration.md

clean:
	rm -rf .venv build dist *.egg-info .pytest_cache
