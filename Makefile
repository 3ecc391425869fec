# Thin wrappers; each target is documented in README.md.
SHELL := /bin/bash
CARGO ?= cargo
VAR ?= $(CURDIR)/var

.PHONY: all deps build lint test run bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --locked --release

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Every test: unit, property, crash and real-client integration tests.
test: deps lint
	$(CARGO) test --workspace --locked

# Until the appliance image exists: storaged on this machine, in the foreground.
run: build
	@mkdir -p $(VAR)/run
	@echo "storaged: NBD on 127.0.0.1:10809, control socket $(VAR)/run/storaged.sock"
	@echo "try:  STORAGED_CONTROL=$(VAR)/run/storaged.sock target/release/storaged volume list"
	STORAGED_CONTROL=$(VAR)/run/storaged.sock target/release/storaged serve \
		--data-dir $(VAR)/run/data --nbd-listen 127.0.0.1:10809

# storaged vs qemu-nbd and a local copy; needs root (drops caches). Writes BENCHMARKS.md.
bench: build
	$(CARGO) build --locked --release -p storaged --example clone_time
	scripts/bench-storaged.sh

clean:
	$(CARGO) clean
	rm -rf $(VAR)
