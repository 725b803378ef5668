# vanillanet_mm: `make demo` runs the main job, `make test` the test suite.
# Both first build .venv from nothing (scripts/setup_env.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo test clean

venv:
	bash scripts/setup_env.sh

demo: venv
	$(PY) tools/demo.py

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) work_dirs
