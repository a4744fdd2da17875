#!/usr/bin/env bash
# Fuzzes the API against its contract, docs/openapi.yaml, with schemathesis: every check,
# valid and invalid inputs (examples, coverage and fuzzing phases) and the stateful phase,
# which chains operations through the spec's `links`. Any 5xx, any answer the spec does not
# document, any invalid input accepted or valid input refused fails the run.
#
#   scripts/fuzz.sh [MAX_EXAMPLES]   (cases per operation; default 25, the CI-sized run: ~1 min)
#   ARGUS_FUZZ_SEED=<n> scripts/fuzz.sh   repeats a run (the seed is printed at the end)
#
# Starts its own DynamoDB Local, SQS endpoint and target/debug/argus-local on free ports (runs
# beside `make dev` or `make test`) and stops them on exit. It does not build: build the
# runner first (`cargo build -p argus-local`; `make fuzz` does). The exceptions to the checks
# live in scripts/schemathesis.toml and scripts/fuzz_hooks.py, each with its reason.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

MAX_EXAMPLES="${1:-25}"
[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/fuzz.sh [MAX_EXAMPLES] (a positive integer)"
FUZZ_VENV="$ROOT/.venv-fuzz"
require_runner

ensure_stack_tools
if ! "$FUZZ_VENV/bin/python" -c 'import schemathesis' >/dev/null 2>&1; then
  log "installing schemathesis (pinned in tools/stack/requirements-fuzz.txt)"
  rm -rf "$FUZZ_VENV"
  python3 -m venv "$FUZZ_VENV" && "$FUZZ_VENV/bin/pip" install -q --disable-pip-version-check \
    -r "$STACK_DIR/requirements-fuzz.txt" || die "installing schemathesis failed"
fi

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
start_private_api fuzz

REPORT_DIR="$RUN_DIR/fuzz-report"
rm -rf "$REPORT_DIR" && mkdir -p "$REPORT_DIR"
log "schemathesis: all checks, positive and negative data, stateful links, $MAX_EXAMPLES examples per operation"
started=$SECONDS
status=0
# --checks all: includes not_a_server_error (any 5xx fails). Reports (JUnit, and an ndjson
# event log of every case) land in .argus/fuzz-report/, with dropped.ndjson: every failure the
# hooks dropped, and why. Output is not sanitized: the only secret is this run's throwaway key,
# and the reproducers stay runnable. One worker: with two, hypothesis's parallel `ast` use
# trips CPython 3.11's "AST constructor recursion depth mismatch" and aborts operations. Run
# from .argus/, where schemathesis keeps its cache of failing cases (`../.venv-fuzz/bin/st
# replay <id>` there replays one).
(
  cd "$RUN_DIR"
  ARGUS_FUZZ_API_KEY="$API_KEY" SCHEMATHESIS_HOOKS="$ROOT/scripts/fuzz_hooks.py" \
    ARGUS_FUZZ_DROPPED_LOG="$REPORT_DIR/dropped.ndjson" \
    "$FUZZ_VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" \
    run "$ROOT/docs/openapi.yaml" \
    --url "http://127.0.0.1:$API_PORT" \
    --checks all \
    --mode all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --workers 1 \
    --request-timeout 35 \
    --generation-database none \
    --output-sanitize false \
    --report junit,ndjson --report-dir "$REPORT_DIR" \
    ${ARGUS_FUZZ_SEED:+--seed "$ARGUS_FUZZ_SEED"}
) || status=$?
log "schemathesis finished in $((SECONDS - started)) s (exit $status; runner log: $RUNNER_LOG)"
exit "$status"
