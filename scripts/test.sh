#!/usr/bin/env bash
# The full test suite: formatting, clippy -D warnings, unit tests, integration tests against
# DynamoDB Local and the SQS endpoint (own ports, own tables: runs beside a dev stack),
# `sam validate --lint`, the events/ fixture test, and schemathesis against docs/openapi.yaml.
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

# The Lambda binaries themselves (tests compile their crates as test harnesses, whose `main`
# is never built): a handler future too deep to lay out fails only here.
log "cargo build --bins (every Lambda binary)"
cargo build --workspace --bins --quiet

log "sam validate --lint"
SAM_CLI_TELEMETRY=0 "$SAM_VENV/bin/sam" validate --lint -t template.yaml

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
log "starting test emulators (DynamoDB Local :$TEST_DDB_PORT, SQS :$TEST_SQS_PORT)"
start_dynamodb "$TEST_DDB_PORT" "$RUN_DIR/dynamodb-test.log"
TEST_DDB_PID=${PIDS[-1]}
start_sqs "$TEST_SQS_PORT" "$RUN_DIR/sqs-test.log"
export ARGUS_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$TEST_DDB_PORT"
export ARGUS_TEST_SQS_ENDPOINT="http://127.0.0.1:$TEST_SQS_PORT"
# The integration tests start tests/webhook_receiver.py with this Python (standardwebhooks installed).
export ARGUS_WEBHOOK_RECEIVER_PYTHON="$WEBHOOKS_VENV/bin/python"

# Every AWS call each function makes is checked against its policy as it happens and recorded
# here; the IAM contract test then checks the record against template.yaml, both ways.
export ARGUS_IAM_RECORD_DIR="$RUN_DIR/iam-calls"
rm -rf "$ARGUS_IAM_RECORD_DIR" && mkdir -p "$ARGUS_IAM_RECORD_DIR"

log "unit and integration tests"
# The crates have no doctests (nextest would skip them): nextest's summary is the last line.
cargo nextest run --workspace --no-fail-fast --test-threads "${ARGUS_TEST_THREADS:-4}" "$@"
if [ "$#" -eq 0 ]; then
  # Throttling is a normal condition: the integration suite again, every function's DynamoDB
  # calls through the fault proxy (a steady share throttled, a share of every BatchWriteItem
  # returned unprocessed). It must pass unchanged.
  # On a fresh DynamoDB Local: one instance that has served a whole pass answers the same
  # load many times slower (measured: the analytics tests 93 s on a fresh instance, 836 s and
  # failing on one 40 minutes old), although every test deletes its table.
  log "restarting DynamoDB Local for the second pass"
  kill "$TEST_DDB_PID" 2>/dev/null || true
  wait "$TEST_DDB_PID" 2>/dev/null || true
  # Not killed again at exit (its PID may be another process's by then).
  kept=()
  for pid in "${PIDS[@]}"; do [ "$pid" = "$TEST_DDB_PID" ] || kept+=("$pid"); done
  PIDS=("${kept[@]}")
  # The fixed port (ARGUS_TEST_DYNAMODB_PORT) is free again, else any free one.
  TEST_DDB_PORT="${ARGUS_TEST_DYNAMODB_PORT:-$(free_port)}"
  start_dynamodb "$TEST_DDB_PORT" "$RUN_DIR/dynamodb-test-2.log"
  export ARGUS_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$TEST_DDB_PORT"
  log "integration tests again under steady throttling and UnprocessedItems"
  ARGUS_TEST_FAULTS=steady cargo nextest run -p argus-tests --no-fail-fast --test-threads "${ARGUS_TEST_THREADS:-4}"
  # The running API against its contract (docs/openapi.yaml): schemathesis, every check,
  # positive and negative data, stateful links; any failure or 5xx fails the suite. A fixed
  # seed and a small example count here; `make fuzz` runs many more with fresh seeds.
  log "schemathesis against docs/openapi.yaml (${ARGUS_FUZZ_EXAMPLES:-25} examples per operation)"
  ARGUS_FUZZ_SEED="${ARGUS_FUZZ_SEED:-1}" scripts/fuzz.sh "${ARGUS_FUZZ_EXAMPLES:-25}"
  # The SDKs and the CLI against a running local API (their own suites).
  scripts/clients_test.sh
  # Only after the whole suite: a filtered run leaves grants unused.
  log "IAM contract: recorded calls vs template.yaml policies"
  cargo nextest run -p argus-tests --test iam_contract --run-ignored only --no-capture
fi
