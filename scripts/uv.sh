#!/usr/bin/env bash
# scripts/uv.sh ARGS...: the project's pinned uv (installed on first use into .tools/uv-venv), given this machine's
# pip configuration. Every environment the project builds (.venv, the pipeline generator's venv, the lint tools'
# venvs) installs with `uv pip install`, and `make lock` compiles with `uv pip compile`: on the 2-core build
# machine .venv took ~105 s with pip and ~41 s with uv (same packages, same versions; bytecode compiled as pip does).
#
# uv reads none of pip's files or variables, so a machine whose pip is pointed at a mirror, a folder of wheels or a
# constraints file (pip.conf, PIP_INDEX_URL, PIP_FIND_LINKS, ...) would otherwise see a different world with uv.
# What `pip config list` reports (index-url, extra-index-url, find-links, constraint, cert) is handed on to
# `uv pip install`, with pip's rule of taking the best version any index offers. `uv pip compile` (make lock) gets
# none of it: a lock's versions and hashes come from PyPI, not from whatever one machine's mirror holds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
UV_VERSION=0.13.9
UV_VENV="$ROOT/.tools/uv-venv"
UV="$UV_VENV/bin/uv"
PY=${PY:-python3.11}

have_uv() { [ -x "$UV" ] && [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ]; }

if ! have_uv; then
  # `make -j3 deps` builds three environments at once: one of them installs uv, the others wait for it
  mkdir -p "$ROOT/.tools"
  exec 9>"$ROOT/.tools/.uv-venv.lock"
  flock 9
  if ! have_uv; then
    rm -rf "$UV_VENV"
    "$PY" -m venv "$UV_VENV"
    "$UV_VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
  exec 9>&-
fi

if [ "${1:-}" != pip ] || [ "${2:-}" != install ]; then
  exec "$UV" "$@"
fi
shift 2

# pip's configuration, every scope (environment variables included), as `key=value` lines
index_url=""
extra=()
links=()
constraints=()
env_index=""
while IFS= read -r line; do
  key=${line%%=*}
  value=${line#*=}
  value=${value#\'}
  value=${value%\'}
  value=${value//\\n/ } # a multi-line setting comes as one repr'd line, its line breaks written \n
  case "${key##*.}" in
  index-url) if [[ $key == :env:* ]]; then env_index=$value; else index_url=$value; fi ;;
  extra-index-url) read -ra words <<<"$value" && extra+=("${words[@]}") ;;
  find-links) read -ra words <<<"$value" && links+=("${words[@]}") ;;
  constraint) read -ra words <<<"$value" && constraints+=("${words[@]}") ;;
  cert) [ -n "${SSL_CERT_FILE:-}" ] || export SSL_CERT_FILE=$value ;;
  esac
done < <("$PY" -m pip config list 2>/dev/null || true)
index_url=${env_index:-$index_url}

# pip takes the best version any index offers (uv's default stops at the first index that has the name), and
# compiles what it installs to bytecode (uv's default leaves that to the first import — every import, where
# PYTHONDONTWRITEBYTECODE is set, as on the build machine: torch's import took 8.5 s instead of 3.6 s)
args=(--index-strategy unsafe-best-match --compile-bytecode)
[ -z "$index_url" ] || args+=(--index-url "$index_url")
for u in "${extra[@]}"; do args+=(--extra-index-url "$u"); done
for u in "${links[@]}"; do args+=(--find-links "$u"); done
# (a hashed lock pins every version already, and uv refuses an unpinned constraint beside --require-hashes)
case " $* " in *" --require-hashes "*) constraints=() ;; esac
for c in "${constraints[@]}"; do [ ! -f "$c" ] || args+=(--constraint "$c"); done
exec "$UV" pip install "${args[@]}" "$@"
