#!/usr/bin/env bash
# The client SDKs' own suites (clients/python: pytest; clients/js: node's test runner): unit
# tests with fake transports, and integration tests that send through a real local API and read
# the events back. Starts its own DynamoDB Local, SQS endpoint and target/debug/argus-local on
# free ports (beside `make dev` or another run) and stops them on exit. It does not build the
# runner: `make test` has built it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

CLIENTS_VENV="$ROOT/.venv-clients"
require_runner

ensure_stack_tools
if ! "$CLIENTS_VENV/bin/python" -c 'import pytest' >/dev/null 2>&1; then
  log "installing pytest for the Python SDK's tests (pinned in clients/python/requirements-test.txt)"
  rm -rf "$CLIENTS_VENV"
  python3 -m venv "$CLIENTS_VENV" && "$CLIENTS_VENV/bin/pip" install -q --disable-pip-version-check \
    -r clients/python/requirements-test.txt || die "installing pytest failed"
fi
# The SDK as a user installs it (`pip install ./clients/python`), afresh each run.
"$CLIENTS_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./clients/python \
  || die "installing the Python SDK failed"

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
start_private_api clients

export ARGUS_URL="http://127.0.0.1:$API_PORT" ARGUS_API_KEY="$API_KEY"
log "Python SDK: pytest clients/python/tests (unit and integration)"
"$CLIENTS_VENV/bin/python" -m pytest -q clients/python/tests
if [ -d clients/js ]; then
  log "JavaScript SDK: node --test (unit and integration)"
  (cd clients/js && node --test test/)
fi
