# The two commands: `make dev` runs the whole API locally, `make test` runs every test.
.PHONY: dev test fmt lint

dev:
	scripts/dev.sh

test:
	scripts/test.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings
