# Hashed lock files: every environment that pip-installs at run time installs one, in hash-checking mode.
#   layers/common/requirements.txt              <- requirements.in   the Lambda layer (sam build; python3.12 x86_64)
#   training/loupe_training/requirements.lock   <- training/requirements.in   the SageMaker jobs (DLC python3.12 x86_64;
#                                                  torch/torchvision come with the image: training/dlc-provided.txt)
#   edge_component/inference/requirements.txt   <- requirements.in   the core device's venv (any OS/CPU, python >= 3.11)
#   scripts/tools/parliament.txt                <- parliament.in     the IAM linter of `make lint-infra` (python3.12)
# uv keeps the versions already in a lock unless asked (make lock LOCK_ARGS=--upgrade, or --upgrade-package NAME).
# tests/unit/infra/test_locks.py checks the result and that the installers use it.
# uv is the project's pinned one (scripts/uv.sh, which also installs every environment), given this machine's pip
# indexes.
UV := PY=$(PY) bash scripts/uv.sh
LOCK_ARGS ?=
LOCK := $(UV) pip compile --quiet --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS)

.PHONY: lock

lock: ## regenerate the hashed lock files (layer, SageMaker jobs, edge device, parliament) from their .in files
	$(LOCK) --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
		layers/common/requirements.in -o layers/common/requirements.txt
	$(LOCK) --python-version 3.12 --python-platform x86_64-manylinux_2_28 --overrides training/dlc-provided.txt \
		training/requirements.in -o training/loupe_training/requirements.lock
	$(LOCK) --universal --python-version 3.11 \
		edge_component/inference/requirements.in -o edge_component/inference/requirements.txt
	$(LOCK) --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
		scripts/tools/parliament.in -o scripts/tools/parliament.txt
