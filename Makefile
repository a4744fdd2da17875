# The two commands: `make dev` runs the whole API locally, `make test` runs every test.
.PHONY: dev test bench fmt lint

dev:
	scripts/dev.sh

test:
	scripts/test.sh

# Measurements against the local stack (not part of test: they print, never pass or fail on time).
bench:
	scripts/bench.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings
