#!/usr/bin/env bash
# The full test suite: formatting, clippy -D warnings, unit tests, integration tests against
# DynamoDB Local and the SQS endpoint (own ports, own tables: runs beside a dev stack),
# `sam validate --lint`, and the events/ fixture test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# Free ports unless given: the suite runs beside a dev stack, or another run of itself.
TEST_DDB_PORT="${ARGUS_TEST_DYNAMODB_PORT:-$(free_port)}"
TEST_SQS_PORT="${ARGUS_TEST_SQS_PORT:-$(free_port)}"

ensure_stack_tools
ensure_sam

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "sam validate --lint"
SAM_CLI_TELEMETRY=0 "$SAM_VENV/bin/sam" validate --lint -t template.yaml

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
log "starting test emulators (DynamoDB Local :$TEST_DDB_PORT, SQS :$TEST_SQS_PORT)"
start_dynamodb "$TEST_DDB_PORT" "$RUN_DIR/dynamodb-test.log"
start_sqs "$TEST_SQS_PORT" "$RUN_DIR/sqs-test.log"
export ARGUS_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$TEST_DDB_PORT"
export ARGUS_TEST_SQS_ENDPOINT="http://127.0.0.1:$TEST_SQS_PORT"

log "unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  # The crates have no doctests (nextest would skip them): nextest's summary is the last line.
  cargo nextest run --workspace --no-fail-fast --test-threads "${ARGUS_TEST_THREADS:-4}" "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
