# Loupe — developer entry points. `make demo` runs the local closed loop; `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0

include mk/*.mk

.PHONY: help setup test test-unit test-integration test-e2e lint demo local-up local-down clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: $(BIN)/.installed tools ## build .venv (idempotent) and the lint tools

$(BIN)/.installed: pyproject.toml scripts/check_prereqs.sh
	@bash scripts/check_prereqs.sh python
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@echo "setup: installing torch (CPU use; from the machine's wheel cache when present)"
	@$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	@$(BIN)/pip install -q -e ".[local,train,edge,dev]"
	@touch $@

lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-unit: setup ## unit tests
	$(BIN)/pytest tests/unit -q

test-integration: setup ## integration tests (real ASL in moto, real handlers, local AWS, MQTT on loopback)
	$(BIN)/pytest tests/integration -q

test: setup lint lint-infra ## everything CI runs: ruff, pytest (unit+integration+e2e), sam validate, cfn-lint, asl-validator, checkov
	bash scripts/pytest_gate.sh tests

demo: setup ## the full local closed loop (see README)
	$(BIN)/loupe demo $(if $(DATASET),--dataset $(DATASET),) $(DEMO_ARGS)

local-up: setup ## start the local AWS in the background
	$(BIN)/loupe local up --detach

local-down: ## stop the local AWS
	$(BIN)/loupe local down

clean: ## remove build output and local state (not .venv)
	rm -rf .aws-sam .loupe loupe-demo .pytest_cache .ruff_cache
