#!/usr/bin/env bash
# Tests the client libraries against the server binary, from a fresh checkout:
#   1. installs what they need (npm ci; a venv in python/.venv with requirements-dev.txt),
#   2. checks the generated protocol types of both clients for drift from the schema,
#   3. builds and runs the TypeScript tests, runs the Python tests,
#   4. runs the examples offline against a replayed transcript.
# Every step runs even when an earlier one failed; the exit status is non-zero if any failed.
#
#   clients/test.sh                                  # server: ../target/debug/agent-server
#   AGENT_SERVER_BIN=/path/to/agent-server clients/test.sh
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${AGENT_SERVER_BIN:-$here/../target/debug/agent-server}"
# A relative AGENT_SERVER_BIN is taken relative to where the script was called from.
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
export AGENT_SERVER_BIN="$bin"
cd "$here"

if [[ ! -x "$AGENT_SERVER_BIN" ]]; then
  echo "clients/test.sh: no server binary at $AGENT_SERVER_BIN; run \`cargo build -p agent-server\` or set AGENT_SERVER_BIN" >&2
  exit 1
fi

failed=()
count=0
step() {
  local name="$1"
  shift
  count=$((count + 1))
  echo
  echo "==> clients: $name"
  if "$@"; then
    echo "<== clients: $name: ok"
  else
    echo "<== clients: $name: FAILED" >&2
    failed+=("$name")
  fi
}

# ---- installs -----------------------------------------------------------------------------

install_ts() {
  (cd typescript && npm ci --no-audit --no-fund --loglevel=error)
}

install_python() {
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "the Python client needs Python 3.10 or newer; $python is $("$python" --version 2>&1)" >&2
    return 1
  fi
  if [[ ! -x python/.venv/bin/python ]]; then
    "$python" -m venv python/.venv || return 1
  fi
  python/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r python/requirements-dev.txt
}

install_jq() {
  command -v jq >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq jq >/dev/null
  else
    echo "the shell examples need jq; install it (e.g. apt-get install jq)" >&2
    return 1
  fi
}

# ---- checks and tests ---------------------------------------------------------------------

ts_check_generated() { (cd typescript && npm run --silent check-generated); }
py_check_generated() { python/.venv/bin/python python/scripts/generate.py --check; }
ts_test() { (cd typescript && npm test --silent); }

py_test() {
  local status=0
  (cd python && .venv/bin/python -m pytest) || status=$?
  if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests; that counts as a failure" >&2
  fi
  return $status
}

# ---- examples -----------------------------------------------------------------------------

# Runs one example offline with a throw-away home and checks that it printed the recorded answer.
expect_answer() {
  local name="$1"
  shift
  local home output status=0
  home="$(mktemp -d)"
  output="$(
    AGENT_SERVER_HOME="$home" \
      AGENT_SERVER_SSE_FIXTURE="$here/fixtures/text_answer.sse" \
      OPENAI_API_KEY=unused \
      "$@" </dev/null
  )" || status=$?
  rm -rf "$home"
  if [[ $status -ne 0 ]]; then
    echo "$name exited with status $status" >&2
    return 1
  fi
  if [[ "$output" != "Hello there!" ]]; then
    echo "$name printed '$output', expected 'Hello there!'" >&2
    return 1
  fi
}

examples() {
  local ok=0
  expect_answer one-liner.sh examples/one-liner.sh || ok=1
  expect_answer ask.sh examples/ask.sh "Say hello" || ok=1
  expect_answer run_prompt.py python/.venv/bin/python examples/run_prompt.py --cwd "$here" "Say hello" || ok=1
  if (cd examples && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build); then
    expect_answer extension-snippet.ts node examples/dist/extension-snippet.js "Say hello" || ok=1
  else
    echo "building the TypeScript example failed" >&2
    ok=1
  fi
  return $ok
}

step "install TypeScript dependencies (npm ci)" install_ts
step "install Python test dependencies (venv)" install_python
step "install jq" install_jq
step "TypeScript generated types are up to date" ts_check_generated
step "Python generated types are up to date" py_check_generated
step "TypeScript tests" ts_test
step "Python tests" py_test
step "examples" examples

echo
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "clients: ${#failed[@]} of $count steps failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "clients: all $count steps succeeded"
