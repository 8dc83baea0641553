#!/usr/bin/env bash
# Runs pytest and refuses a run that collected no tests (pytest exit code 5), which would otherwise pass silently.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing (a green run must test something)" >&2
  exit 1
fi
exit $rc
