#!/usr/bin/env bash
# `make package`: `sam build` of every function (BuildMethod rust-cargolambda, arm64, release
# profile of Cargo.toml), then each function's deployment zip size. Installs its tools on a
# fresh machine (aws-sam-cli, cargo-lambda and zig from PyPI, the Rust arm64 standard library
# through rustup); needs nothing else from the network.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

LAMBDA_VENV="$ROOT/.venv-lambda"
ensure_sam
if [ ! -x "$LAMBDA_VENV/bin/cargo-lambda" ]; then
  log "installing cargo-lambda and zig (pinned in tools/stack/requirements-lambda.txt)"
  python3 -m venv "$LAMBDA_VENV" && "$LAMBDA_VENV/bin/pip" install -q --disable-pip-version-check \
    -r "$STACK_DIR/requirements-lambda.txt" || die "installing cargo-lambda failed"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  log "adding the Rust target aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi

# sam runs `cargo lambda build --release --arm64 --bin <Binary>` per function in the workspace
# (one shared target/), with cargo-lambda and zig from the venv.
export PATH="$LAMBDA_VENV/bin:$PATH"
log "sam build (arm64, release): every function of template.yaml"
started=$SECONDS
SAM_CLI_TELEMETRY=0 "$SAM_VENV/bin/sam" build --beta-features --config-file samconfig.toml
elapsed=$((SECONDS - started))

log "deployment packages (zip of each function's bootstrap, as sam deploy uploads it)"
printf '%-22s %12s %12s\n' function bootstrap zip
total=0
for dir in .aws-sam/build/*/; do
  name=$(basename "$dir")
  [ -f "$dir/bootstrap" ] || continue
  zip_bytes=$(python3 - "$dir" <<'PY'
import io, os, sys, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
    for root, _, files in os.walk(sys.argv[1]):
        for file in files:
            path = os.path.join(root, file)
            archive.write(path, os.path.relpath(path, sys.argv[1]))
print(len(buffer.getvalue()))
PY
)
  total=$((total + zip_bytes))
  printf '%-22s %12s %12s\n' "$name" "$(stat -c %s "$dir/bootstrap")" "$zip_bytes"
done
printf '%-22s %12s %12s\n' total "" "$total"
log "built in ${elapsed} s; artifacts in .aws-sam/build (deploy: sam deploy --guided)"
