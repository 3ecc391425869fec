# Thin wrappers; each target is documented in README.md.
SHELL := /bin/bash
CARGO ?= cargo
VAR ?= $(CURDIR)/var

.PHONY: all deps build lint test dev run bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --locked --release

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Every test: unit, property, crash and real-client integration tests, then the HPE Python
# SDK (hpOneView) against the real daemons (tests/python; the daemons are the debug builds).
test: deps lint
	$(CARGO) test --workspace --locked
	$(CARGO) build --workspace --locked
	scripts/test-python.sh

# All daemons on this machine in the foreground: state under ./var/dev, HTTPS API on
# 127.0.0.1:8443, NBD on 127.0.0.1:10809 (see scripts/dev.sh). Ctrl-C stops them.
dev: build
	STATE=$(VAR)/dev scripts/dev.sh

# Until the appliance image exists, the same services as `make dev`, on this machine.
run: dev

# storaged vs qemu-nbd and a local copy; needs root (drops caches). Writes BENCHMARKS.md.
bench: build
	$(CARGO) build --locked --release -p storaged --example clone_time
	scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf $(VAR)
