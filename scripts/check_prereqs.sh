#!/usr/bin/env bash
# Says what is missing and how to get it, instead of failing later with a traceback.
set -uo pipefail
missing=0
need() { # need <command> <how to install>
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "missing: $1 — install it with: $2" >&2
    missing=1
  fi
}
for what in "$@"; do
  case "$what" in
    python)
      if ! command -v python3.11 >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
        echo "missing: Python 3.11 — install it (e.g. 'pyenv install 3.11' or 'apt-get install python3.11 python3.11-venv')" >&2
        missing=1
      fi ;;
    python312)
      if ! command -v python3.12 >/dev/null 2>&1; then
        echo "missing: python3.12 on PATH (sam build needs the Lambda runtime's Python) — 'pyenv install 3.12' and 'pyenv global 3.11 3.12', or 'apt-get install python3.12'" >&2
        missing=1
      fi ;;
    node) need node "scripts/install_prereqs.sh (Debian/Ubuntu; Node 18+)"; need npm "scripts/install_prereqs.sh (it leaves a NodeSource nodejs, which ships npm, alone)" ;;
    chromium) need chromium "scripts/install_prereqs.sh, or apt-get install -y chromium (headless browser for the console tests)" ;;
    mosquitto) need mosquitto "scripts/install_prereqs.sh, or apt-get install -y mosquitto (or the tests fall back to amqtt)" ;;
  esac
done
exit $missing
