#!/usr/bin/env bash
# Runs the whole API locally: DynamoDB Local + SQS endpoint + every route of template.yaml on
# http://127.0.0.1:${ARGUS_PORT:-3000}. Ctrl-C stops everything it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export ARGUS_DYNAMODB_PORT="${ARGUS_DYNAMODB_PORT:-8000}"
export ARGUS_SQS_PORT="${ARGUS_SQS_PORT:-9324}"
export ARGUS_PORT="${ARGUS_PORT:-3000}"
# Webhooks to a receiver on this machine (plain http to loopback); deployed stacks never allow it.
export ARGUS_WEBHOOK_ALLOW_HTTP_LOOPBACK="${ARGUS_WEBHOOK_ALLOW_HTTP_LOOPBACK:-1}"
# Bearer tokens from an issuer on this machine, when ARGUS_JWT_ISSUER and ARGUS_JWT_AUDIENCE are set.
export ARGUS_JWT_ALLOW_HTTP_LOOPBACK="${ARGUS_JWT_ALLOW_HTTP_LOOPBACK:-1}"

ensure_stack_tools
log "building the local runner"
cargo build -q -p argus-local

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
log "starting DynamoDB Local on :$ARGUS_DYNAMODB_PORT and the SQS endpoint on :$ARGUS_SQS_PORT"
start_dynamodb "$ARGUS_DYNAMODB_PORT" "$RUN_DIR/dynamodb-dev.log"
start_sqs "$ARGUS_SQS_PORT" "$RUN_DIR/sqs-dev.log"

"$LOCAL_RUNNER" &
PIDS+=("$!")
wait "$!"
