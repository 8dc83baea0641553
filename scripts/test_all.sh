#!/usr/bin/env bash
# `make test`: every check CI runs. ruff first (seconds: a lint or format error fails before anything starts); then
# mypy, the lint tools' install (scripts/lint_infra.sh tools, a no-op once they are there) and the infrastructure
# gates (scripts/lint_infra.sh lint) run beside pytest — ~5 min of one core on a clean clone, none of which pytest
# needs — while its device and pipeline tests leave part of the machine idle waiting on devices. Their output is
# printed after pytest's; the run fails if pytest or any gate failed. Arguments go to pytest (scripts/pytest_gate.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check . && .venv/bin/ruff format --check . || exit 1
gates_log=$(mktemp)
(.venv/bin/mypy && bash scripts/lint_infra.sh tools && bash scripts/lint_infra.sh lint) >"$gates_log" 2>&1 &
gates=$!
trap 'kill "$gates" 2>/dev/null; rm -f "$gates_log"' EXIT
SECONDS=0
bash scripts/pytest_gate.sh "$@"
tests=$?
echo "pytest: exit $tests after ${SECONDS} s; waiting for mypy and the infrastructure gates"
wait "$gates"
gates_rc=$?
echo "=== mypy and the infrastructure gates (they ran beside pytest) ==="
cat "$gates_log"
if [ "$tests" -ne 0 ] || [ "$gates_rc" -ne 0 ]; then
  echo "make test: FAILED (pytest exit $tests, mypy and infrastructure gates exit $gates_rc)" >&2
  exit 1
fi
echo "make test: passed (ruff, pytest, mypy, infrastructure gates)"
