#!/usr/bin/env bash
# The infrastructure gates of `make test` (see mk/infra.mk):
#   lint_infra.sh tools   install, idempotently, what the gates need into .tools/ and node_modules/
#   lint_infra.sh lint    sam validate --lint, cfn-lint + serverless rules, asl-validator, checkov, parliament (IAM
#                         policies), sam build
# Every gate runs offline: no AWS account, no credentials; only `make tools` and `sam build` (layer
# dependencies) reach the package registries.
set -uo pipefail
cd "$(dirname "$0")/.."

SAM_CLI_VERSION=1.170.0
CHECKOV_VERSION=3.3.30
CFN_LINT_SERVERLESS_VERSION=0.3.6 # also pinned in pyproject.toml (`local`), for cfn-lint in .venv
TOOLS=.tools
SAM="$TOOLS/sam/bin/sam"
CHECKOV="$TOOLS/checkov/bin/checkov"
PARLIAMENT_LOCK=scripts/tools/parliament.txt # hashed, compiled by `make lock` from scripts/tools/parliament.in
PARLIAMENT_PY="$TOOLS/parliament/bin/python"
ASL_VALIDATOR=node_modules/.bin/asl-validator
VENV_PY=.venv/bin/python
REGION=us-east-1 # the linters need a region to check against; nothing is called there

export SAM_CLI_TELEMETRY=0
export BC_SKIP_MAPPING=TRUE # checkov: no download of guideline mappings

die() {
  echo "lint-infra: $*" >&2
  exit 1
}

# A python3.12 that actually runs (a pyenv shim for a version that is not selected does not).
# LOUPE_PYTHON312=/path/to/python3.12 chooses one explicitly.
find_python312() {
  local candidate
  if [ -n "${LOUPE_PYTHON312:-}" ]; then
    "$LOUPE_PYTHON312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 || return 1
    echo "$LOUPE_PYTHON312"
    return 0
  fi
  for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 \
    /usr/local/bin/python3.12 /usr/bin/python3.12; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
      >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 1
}

need_python312() {
  PY312=$(find_python312) || die "missing: python3.12${LOUPE_PYTHON312:+ (LOUPE_PYTHON312=$LOUPE_PYTHON312 is not one)} \
— sam build needs the Lambda runtime's Python and the tools run on it. Install it with 'pyenv install 3.12' \
(found under \$(pyenv root)/versions) or 'apt-get install python3.12 python3.12-venv', or point \
LOUPE_PYTHON312 at one"
}

# tool_venv <dir> <package==version>... : a separate venv per tool, rebuilt only when the pins change
tool_venv() {
  local dir=$1
  shift
  local spec="$*" stamp="$dir/.installed"
  # (a venv whose interpreter went away, e.g. a removed pyenv version, is rebuilt too)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] && "$dir/bin/python" -c '' >/dev/null 2>&1; then
    return 0
  fi
  echo "tools: installing $spec into $dir"
  rm -rf "$dir"
  "$PY312" -m venv "$dir" || die "cannot create a venv with $PY312 (Debian: apt-get install python3.12-venv)"
  PY="$PY312" bash scripts/uv.sh pip install -q --python "$dir/bin/python" "$@" || die "uv could not install $spec"
  echo "$spec" >"$stamp"
}

# locked_venv <dir> <lock file> : a venv holding exactly a hashed lock (pip's hash-checking mode), rebuilt when the
# lock changes
locked_venv() {
  local dir=$1 lock=$2 stamp="$1/.installed" spec
  spec="$lock $(sha256sum "$lock" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] && "$dir/bin/python" -c '' >/dev/null 2>&1; then
    return 0
  fi
  echo "tools: installing $lock into $dir"
  rm -rf "$dir"
  "$PY312" -m venv "$dir" || die "cannot create a venv with $PY312 (Debian: apt-get install python3.12-venv)"
  PY="$PY312" bash scripts/uv.sh pip install -q --python "$dir/bin/python" --require-hashes --no-deps -r "$lock" ||
    die "uv could not install $lock"
  echo "$spec" >"$stamp"
}

cmd_tools() {
  bash scripts/check_prereqs.sh node || exit 1
  need_python312
  mkdir -p "$TOOLS"
  # sam validate --lint reads .cfnlintrc.yaml, which appends the serverless rules: they live in this venv too
  tool_venv "$TOOLS/sam" "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint-serverless==$CFN_LINT_SERVERLESS_VERSION"
  tool_venv "$TOOLS/checkov" "checkov==$CHECKOV_VERSION"
  locked_venv "$TOOLS/parliament" "$PARLIAMENT_LOCK"
  if [ ! -x "$ASL_VALIDATOR" ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "tools: npm ci (asl-validator, pinned by package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
  fi
  # cfn-lint and cfn-lint-serverless are pinned in pyproject.toml's `local` extra and live in .venv
  if [ -x "$VENV_PY" ] && ! "$VENV_PY" -c 'import cfn_lint_serverless' >/dev/null 2>&1; then
    echo "tools: cfn-lint-serverless is missing from .venv; run 'make setup'" >&2
  fi
  echo "tools: ready (sam $SAM_CLI_VERSION, checkov $CHECKOV_VERSION, parliament ($PARLIAMENT_LOCK), asl-validator," \
    "cfn-lint + serverless rules)"
}

FAILED=()
gate() { # gate <name> <command...>
  local name=$1
  shift
  local start=$SECONDS
  echo "── $name"
  if "$@"; then
    echo "   ok: $name ($((SECONDS - start)) s)"
  else
    echo "   FAILED: $name" >&2
    FAILED+=("$name")
  fi
}

asl_validate() {
  local out
  out=$(mktemp -d)
  # Step Functions validates the definition after DefinitionSubstitutions; so does this gate.
  "$VENV_PY" scripts/lint_infra_asl.py template.yaml "$out" || {
    rm -rf "$out"
    return 1
  }
  local f rc=0
  for f in "$out"/*.asl.json; do
    "$ASL_VALIDATOR" --json-path "$f" || rc=1
  done
  rm -rf "$out"
  return $rc
}

parliament_lint() {
  local out rc=0
  out=$(mktemp -d)
  # every IAM policy of the SAM-transformed template, one JSON file each, then parliament with the written
  # suppressions (scripts/parliament_suppressions.yaml)
  "$VENV_PY" scripts/lint_infra_iam.py template.yaml "$out" &&
    "$PARLIAMENT_PY" scripts/lint_infra_parliament.py "$out" scripts/parliament_suppressions.yaml || rc=1
  rm -rf "$out"
  return $rc
}

sam_build() {
  # Builds into .tools/sam-build (not the developer's .aws-sam/build). The build dir is kept so that --cached
  # can reuse the layer's dependencies while requirements.txt is unchanged; sam rebuilds whatever changed.
  local out="$TOOLS/sam-build" log
  log=$(mktemp)
  mkdir -p "$out"
  # sam build looks for python3.12 on PATH
  PATH="$(dirname "$PY312"):$PATH" "$SAM" build -t template.yaml --build-dir "$out/build" \
    --cache-dir "$out/cache" --cached --parallel --region "$REGION" >"$log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    cat "$log" >&2
  else
    grep -E '^Build Succeeded' "$log"
    local fn
    for fn in "$out"/build/*/; do # every built function and the layer have content
      [ -n "$(ls -A "$fn")" ] || {
        echo "empty build artifact: $fn" >&2
        rc=1
      }
    done
    [ -d "$out/build/CommonLayer/python/loupe" ] || {
      echo "the layer lacks python/loupe" >&2
      rc=1
    }
  fi
  rm -f "$log"
  return $rc
}

cmd_lint() {
  need_python312
  [ -x "$SAM" ] && [ -x "$CHECKOV" ] && [ -x "$ASL_VALIDATOR" ] && [ -x "$PARLIAMENT_PY" ] ||
    die "tools missing: run 'make tools'"
  [ -x "$VENV_PY" ] || die ".venv missing: run 'make setup'"
  "$VENV_PY" -c 'import cfn_lint_serverless' 2>/dev/null || die "cfn-lint-serverless missing from .venv: run 'make setup'"
  local start=$SECONDS
  gate "sam validate" "$SAM" validate --region "$REGION" -t template.yaml
  gate "sam validate --lint" "$SAM" validate --lint --region "$REGION" -t template.yaml
  # rules, regions and the serverless rule set come from .cfnlintrc.yaml
  gate "cfn-lint + cfn-lint-serverless" .venv/bin/cfn-lint
  gate "asl-validator (statemachines/*.asl.json, after DefinitionSubstitutions)" asl_validate
  gate "checkov (template.yaml)" "$CHECKOV" -f template.yaml --framework cloudformation --compact --quiet \
    --skip-download
  gate "parliament (template.yaml's IAM policies)" parliament_lint
  gate "sam build (python3.12: $PY312)" sam_build
  if [ ${#FAILED[@]} -ne 0 ]; then
    echo "lint-infra: FAILED: ${FAILED[*]}" >&2
    exit 1
  fi
  echo "lint-infra: all infrastructure gates passed ($((SECONDS - start)) s)"
}

case "${1:-}" in
tools) cmd_tools ;;
lint) cmd_lint ;;
*)
  echo "usage: $0 tools|lint" >&2
  exit 2
  ;;
esac
