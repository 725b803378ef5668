# vanillanet_mm: `make demo` runs the main job, `make test` the lint (ruff)
# and the default tests, `make test-slow` the end-to-end ones (minutes each),
# `make test-compat` the tests on the lower-bound stack. CI runs all three.
# Each first builds its virtualenv from nothing (scripts/setup_env.sh,
# idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# make test: the default tests on every core (pytest-xdist), each test file's
# tests in one worker (their module fixtures are built once)
TEST_WORKERS ?= auto
# the lower bound: torch 2.1.2 / torchvision 0.16.2 / numpy < 2, mmcv 2.1.0
LOWER_VENV ?= .venv-lower
# there: the default subset plus the slow tests marked `compat`, the
# end-to-end runs a user makes first (train -> test -> --deploy, the wheel
# outside the repository, mmdet's and mmseg's own tools)
COMPAT_PYTEST_ARGS ?= -m "not slow or compat"

.PHONY: venv venv-lower demo deploy-demo deploy-demo-int8 test test-slow test-compat lint \
	clean

venv:
	bash scripts/setup_env.sh

venv-lower:
	STACK=lower VENV=$(LOWER_VENV) bash scripts/setup_env.sh

# DEMO_ARGS e.g. --seed 1
DEMO_ARGS ?=
demo: venv
	$(PY) tools/demo.py $(DEMO_ARGS)

# after `make demo`: both demo models through mmdeploy to ONNX Runtime, each
# evaluated against PyTorch (work_dirs/demo/deploy/{det,seg}/deploy_report.json);
# deploy-demo-int8 also quantizes each to INT8 and evaluates it beside fp32
DEPLOY_ARGS ?=
deploy-demo-int8: DEPLOY_ARGS += --int8
deploy-demo-int8: deploy-demo
deploy-demo: venv
	@test -f work_dirs/demo/det/last_checkpoint -a -f work_dirs/demo/seg/last_checkpoint \
	  || { echo 'no trained demo models in work_dirs/demo: run make demo first'; exit 1; }
	$(PY) tools/deployment/deploy.py configs/mask_rcnn/vanillanet_demo.py \
	  "$$(cat work_dirs/demo/det/last_checkpoint)" --work-dir work_dirs/demo/deploy/det --dynamic --test $(DEPLOY_ARGS)
	$(PY) tools/deployment/deploy.py configs/upernet/vanillanet_demo.py \
	  "$$(cat work_dirs/demo/seg/last_checkpoint)" --work-dir work_dirs/demo/deploy/seg --test $(DEPLOY_ARGS)

test: venv lint
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests

test-slow: venv
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS) tests

test-compat: venv-lower
	$(LOWER_VENV)/bin/python -m pytest -q $(COMPAT_PYTEST_ARGS) tests

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(LOWER_VENV) work_dirs
