# Loupe — developer entry points. `make demo` runs the local closed loop; `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
WEB_VENDOR := functions/console_api/web/vendor/amazon-cognito-identity.min.js
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0

include mk/*.mk

# The SageMaker SDK (2.x) generates the pipeline definition; it pins libraries .venv needs newer, so it lives apart.
.tools/sagemaker-venv/bin/python:
	@$(PY) -m venv .tools/sagemaker-venv
	@PY=$(PY) bash scripts/uv.sh pip install -q --python .tools/sagemaker-venv/bin/python "sagemaker==2.257.7"

pipeline: .tools/sagemaker-venv/bin/python ## regenerate the pipeline definition in template.yaml (TrainingPipeline)
	.tools/sagemaker-venv/bin/python training/pipeline.py --splice template.yaml

web-vendor: $(WEB_VENDOR) ## copy the console's sign-in library into functions/console_api/web/vendor/

.PHONY: help web-vendor deps setup pipeline test test-unit test-integration test-e2e lint demo local-up local-down clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# What the demo and the tests run on; the lint tools (`make tools`) are only the infrastructure gates' own, so
# `make test` installs them beside pytest (scripts/test_all.sh) and `make demo` not at all.
deps: $(BIN)/.installed $(WEB_VENDOR) .tools/sagemaker-venv/bin/python ## build .venv (idempotent), the console's vendored library and the pipeline generator
	@:

setup: deps tools ## `make deps` and the lint tools (.tools/, node_modules/)

# The console's sign-in library (AWS Amplify's amazon-cognito-identity-js, pinned in package.json/package-lock.json,
# installed by `npm ci` in `make tools`) ships with the ConsoleApiFunction's code; the copy is not committed, so it
# is made before `sam build`, `make demo` and `make test` (all of which need `deps`). npm ci runs here when
# node_modules is missing or older than the lock (as `make tools` decides for asl-validator).
$(WEB_VENDOR): package-lock.json
	@bash scripts/check_prereqs.sh node
	@test -f node_modules/amazon-cognito-identity-js/dist/amazon-cognito-identity.min.js \
		-a ! package-lock.json -nt node_modules/.package-lock.json || npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(dir $@)
	@cp node_modules/amazon-cognito-identity-js/dist/amazon-cognito-identity.min.js $@
	@echo "setup: $@ (amazon-cognito-identity-js $$(node -p 'require("./node_modules/amazon-cognito-identity-js/package.json").version'))"

$(BIN)/.installed: pyproject.toml layers/common/requirements.txt training/loupe_training/requirements.lock scripts/check_prereqs.sh scripts/uv.sh
	@bash scripts/check_prereqs.sh python
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# the layer's and the SageMaker jobs' locks (make lock; name==version, hashes dropped) constrain .venv: the local
	@# AWS, the tests and local training run the versions the cloud installs
	@sed -nE 's/^([A-Za-z0-9._-]+==[^ ;\\]+).*/\1/p' layers/common/requirements.txt \
		training/loupe_training/requirements.lock | sort -u > $(VENV)/lock-constraints.txt
	@echo "setup: installing .venv with uv (torch for the CPU use; from the machine's wheel cache when present)"
	@PY=$(PY) bash scripts/uv.sh pip install -q --python $(BIN)/python "torch==2.14.1" "torchvision==0.29.1" \
		-e ".[local,train,edge,dev]" -c $(VENV)/lock-constraints.txt
	@touch $@

lint: deps ## ruff lint + format check, mypy on every package (loupe, loupe_local, loupe_edge, loupe_training)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-unit: deps ## unit tests
	$(BIN)/pytest tests/unit -q

test-integration: deps ## integration tests (real ASL in moto, real handlers, local AWS, MQTT on loopback)
	$(BIN)/pytest tests/integration -q

# WORKERS=N runs pytest on N pytest-xdist workers, a file per worker at a time, in collection order: the longest
# files first, unit tests last (tests/support/file_order.py; a unit test's moto reset must never run before an
# integration test in the same worker). Three by default, on the 2-core machine too: its device, pipeline and
# browser tests leave the cores idle while they wait, and a third worker fills them (four were faster still but left
# a device test without its result in 60 s once; docs/DEVELOPING.md, "Tests", has the timings; WORKERS=0: serially).
# The device tests judge by progress (a candidate running, a deployment finished), not by a deadline a busy machine
# misses.
WORKERS ?= 3
PYTEST_PARALLEL := $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS) --dist loadfile --no-loadscope-reorder,)

# `make deps` first, its three parts at once, each installed by uv (scripts/uv.sh; a clean clone: ~30-45 s in all);
# then ruff; then mypy, the lint tools' install and the infrastructure gates (what `make lint`, `make tools` and
# `make lint-infra` run) go beside pytest (scripts/test_all.sh), overlapping the tests' waits on devices.
test: ## everything CI runs: ruff, mypy, pytest (unit+integration+e2e), sam validate, cfn-lint, asl-validator, checkov, parliament, sam build
	@$(MAKE) --no-print-directory -j3 deps
	bash scripts/test_all.sh tests $(PYTEST_PARALLEL) --durations=40  # the 40 slowest tests and fixtures: where the suite's time goes

demo: deps ## the full local closed loop (see README)
	$(BIN)/loupe demo $(if $(DATASET),--dataset $(DATASET),) $(DEMO_ARGS)

local-up: deps ## start the local AWS in the background
	$(BIN)/loupe local up --detach

local-down: ## stop the local AWS
	$(BIN)/loupe local down

clean: ## remove build output and local state (not .venv)
	rm -rf .aws-sam .loupe loupe-demo .pytest_cache .ruff_cache
