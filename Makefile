# The two commands: `make dev` runs the whole API locally, `make test` runs every test.
.PHONY: dev test bench fuzz package fmt lint

dev:
	scripts/dev.sh

test:
	scripts/test.sh

# Measurements against the local stack (not part of test: they print, never pass or fail on time).
bench:
	scripts/bench.sh

# The API against docs/openapi.yaml with schemathesis, long: FUZZ_EXAMPLES cases per operation
# (scripts/fuzz.sh alone defaults to a CI-sized 25). Builds the local runner, which fuzz.sh does not.
FUZZ_EXAMPLES ?= 500
fuzz:
	cargo build -q -p argus-local
	scripts/fuzz.sh $(FUZZ_EXAMPLES)

# sam build of every function (arm64 release zips), with their sizes; installs its own tools.
package:
	scripts/package.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings
