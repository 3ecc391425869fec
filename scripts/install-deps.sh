#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need; does nothing when they are all
# present, so `make test` can call it every time.
set -euo pipefail

packages=(
    qemu-utils      # qemu-img, qemu-io, qemu-nbd: NBD clients and the benchmark's peer server
    libnbd-bin      # nbdinfo, nbdcopy: libnbd's NBD clients
    fio             # 4 KiB random-read IOPS over NBD (make bench)
    e2fsprogs       # mkfs.ext4 (attach tests)
    util-linux      # mkswap, losetup
    fdisk           # sfdisk: partition tables for the attach tests
    xfsprogs        # mkfs.xfs (attach tests)
    dosfstools      # mkfs.vfat (attach tests)
    lvm2            # pvcreate/vgcreate/vgcfgrestore/vgs: LVM PVs for the attach tests (no dm needed)
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: run as root (or install ${missing[*]} yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
    echo "error: cargo is missing; install Rust with rustup (rust-toolchain.toml pins the version)" >&2
    exit 1
fi
