# vanillanet_mm: `make demo` runs the main job, `make test` the lint (ruff)
# and the test suite.
# Both first build .venv from nothing (scripts/setup_env.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo test lint clean

venv:
	bash scripts/setup_env.sh

demo: venv
	$(PY) tools/demo.py

test: venv lint
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) work_dirs
