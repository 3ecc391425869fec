# Thin wrappers; each target is documented in README.md.
SHELL := /bin/bash
CARGO ?= cargo
VAR ?= $(CURDIR)/var

.PHONY: all deps build lint test test-qemu dev run bench clean image

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --locked --release

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Every test: unit, property, crash and real-client integration tests, the appliance image
# booted in QEMU (qemu-tests/), then the HPE Python SDK (hpOneView) against the real daemons
# (tests/python; the daemons are the debug builds).
test: deps lint image
	$(CARGO) test --workspace --locked
	$(CARGO) build --workspace --locked
	scripts/test-python.sh

# Only the QEMU tests, or those whose name contains SCENARIO (deploy-hpe, deploy-linux,
# capture, uefi, console, ...).
test-qemu: deps image
	$(CARGO) test --locked -p streamer-qemu-tests -- --nocapture $(subst -,_,$(SCENARIO))

# All daemons on this machine in the foreground: state under ./var/dev, HTTPS API on
# 127.0.0.1:8443, NBD on 127.0.0.1:10809 (see scripts/dev.sh). Ctrl-C stops them.
dev: build
	STATE=$(VAR)/dev scripts/dev.sh

# The appliance image booted in QEMU (OVMF, TCG) with its API on https://127.0.0.1:8443 and
# its serial console here; state in $(VAR)/run/streamer.qcow2 (delete it for a fresh
# appliance). Ctrl-C powers it off cleanly.
run: image
	$(CARGO) build --locked --release -p streamer-qemu-tests --bin streamer-vm
	$(TARGET_DIR)/release/streamer-vm run --disk $(VAR)/run/streamer.qcow2 \
		--cli $(STATIC_DIR)/streamerctl

# storaged vs qemu-nbd and a local copy, the API, plan scripts, deploys, and the appliance's
# boot in QEMU; needs root (drops caches). Writes BENCHMARKS.md.
bench: build image
	$(CARGO) build --locked --release -p storaged --example clone_time
	$(CARGO) build --locked --release -p streamer-qemu-tests --bin streamer-vm
	scripts/bench.sh

# The appliance image (initramfs, UKI, GPT disk) from static release binaries and Debian's
# current kernel; prints the image path. INIT=path overrides the PID 1 binary (default: the
# streamer-init build, when that crate exists).
IMAGE_TARGET := x86_64-unknown-linux-gnu
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
STATIC_DIR := $(TARGET_DIR)/$(IMAGE_TARGET)/appliance
INIT ?= $(STATIC_DIR)/streamer-init
#
# storaged, deployd and streamerctl are one multi-call binary there, `streamer` (12 MB less to
# unpack at every boot); $(STATIC_DIR)/streamerctl is a link to it, a static client to copy.
image: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --profile appliance \
		--target $(IMAGE_TARGET) -p streamer-init -p streamer-multicall
	@test -x "$(INIT)" || { echo "error: no init binary at $(INIT); pass INIT=path" >&2; exit 1; }
	ln -sf streamer $(STATIC_DIR)/streamerctl
	$(CARGO) build --locked --release -p streamer-image
	$(TARGET_DIR)/release/streamer-image build --init "$(INIT)" \
		--multicall $(STATIC_DIR)/streamer \
		--cache $(TARGET_DIR)/streamer-image/cache --out $(TARGET_DIR)/streamer-image/out

clean:
	$(CARGO) clean
	rm -rf $(VAR)
