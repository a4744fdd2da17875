#!/usr/bin/env bash
# Benchmarks against the local stack: release build, own emulators on free ports, then
# `argus-bench all` (tables on stdout, figures in target/bench/results.json).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_stack_tools
log "release build of every function and the bench (fat LTO: ~10 min from clean on 2 cores, seconds when cached)"
cargo build --release -q -p argus-bench -p argus-authorizer -p argus-health -p argus-sessions \
  -p argus-events -p argus-errors -p argus-processor -p argus-batch -p argus-sweeper -p argus-streams \
  -p argus-cli

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
export ARGUS_DYNAMODB_PORT="${ARGUS_BENCH_DYNAMODB_PORT:-$(free_port)}"
export ARGUS_SQS_PORT="${ARGUS_BENCH_SQS_PORT:-$(free_port)}"
log "starting bench emulators (DynamoDB Local :$ARGUS_DYNAMODB_PORT, SQS :$ARGUS_SQS_PORT)"
start_dynamodb "$ARGUS_DYNAMODB_PORT" "$RUN_DIR/dynamodb-bench.log"
start_sqs "$ARGUS_SQS_PORT" "$RUN_DIR/sqs-bench.log"
ARGUS_BENCH_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  RUST_LOG="${RUST_LOG:-error}" "$ROOT/target/release/argus-bench" "${@:-all}"
