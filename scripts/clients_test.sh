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
RUNNER="$ROOT/target/debug/argus-local"
[ -x "$RUNNER" ] || die "$RUNNER is missing: build it first (cargo build -p argus-local)"

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

DDB_PORT=$(free_port)
SQS_PORT=$(free_port)
API_PORT=$(free_port)
API_KEY="clients-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
RUNNER_LOG="$RUN_DIR/argus-clients.log"

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
log "starting DynamoDB Local :$DDB_PORT, SQS endpoint :$SQS_PORT"
start_dynamodb "$DDB_PORT" "$RUN_DIR/dynamodb-clients.log"
start_sqs "$SQS_PORT" "$RUN_DIR/sqs-clients.log"
log "starting argus-local on :$API_PORT (log: $RUNNER_LOG)"
ARGUS_DYNAMODB_PORT="$DDB_PORT" ARGUS_SQS_PORT="$SQS_PORT" ARGUS_PORT="$API_PORT" \
  ARGUS_DEV_API_KEY="$API_KEY" ARGUS_TABLE="argus-clients" ARGUS_QUEUE_PREFIX="argus-clients" \
  RUST_LOG="${RUST_LOG:-warn}" "$RUNNER" >"$RUNNER_LOG" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 360); do
  grep -q "Argus is serving" "$RUNNER_LOG" 2>/dev/null && break
  sleep 0.25
done
grep -q "Argus is serving" "$RUNNER_LOG" || { tail -n 30 "$RUNNER_LOG" >&2; die "argus-local did not start within 90 s"; }

export ARGUS_URL="http://127.0.0.1:$API_PORT" ARGUS_API_KEY="$API_KEY"
log "Python SDK: pytest clients/python/tests (unit and integration)"
"$CLIENTS_VENV/bin/python" -m pytest -q clients/python/tests
if [ -d clients/js ]; then
  log "JavaScript SDK: node --test (unit and integration)"
  (cd clients/js && node --test test/)
fi
