#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need; does nothing when they are all
# present, so `make test` can call it every time.
set -euo pipefail

packages=(
    qemu-utils      # qemu-img, qemu-io, qemu-nbd: NBD clients and the benchmark's peer server
    libnbd-bin      # nbdinfo, nbdcopy: libnbd's NBD clients
    fio             # 4 KiB random-read IOPS over NBD (make bench)
    wrk             # REST API requests/s and latency (make bench)
    e2fsprogs       # mkfs.ext4: test images
    util-linux      # mkswap, losetup
    fdisk           # sfdisk: partition tables for test images
    xfsprogs        # mkfs.xfs (attach tests)
    dosfstools      # mkfs.vfat: FAT test images (UEFI system partitions)
    mtools          # mtype: cross-checks our FAT writes with another implementation
    lvm2            # pvcreate/vgcreate/vgcfgrestore/vgs: LVM PVs for the attach tests (no dm needed)
    python3-venv    # make test: a virtualenv for the HPE Python SDK (hpOneView) tests
    busybox-static  # /bin/busybox: the toolbox of the plan-script sandbox (deployd::sandbox) and of the image
    kmod            # depmod: indexes the kernel package's modules for the initramfs (make image)
    systemd-boot-efi # linuxx64.efi.stub: the UKI stub (make image); systemd-bootx64.efi: the test golden image's loader
    binutils        # objcopy: adds the UKI sections (make image)
    cpio            # cpio -it: cross-checks the initramfs (image tests)
    qemu-system-x86 # qemu-system-x86_64: the appliance VM (make run, QEMU tests)
    ovmf            # OVMF_CODE_4M.fd/OVMF_VARS_4M.fd: UEFI firmware for the appliance VM
    ipxe-qemu       # efi-virtio.rom: the compute modules' NIC boot ROM (iSCSI boot, QEMU tests)
    dnsmasq-base    # dnsmasq: hands that ROM its iSCSI boot settings over DHCP (QEMU tests)
    iproute2        # ip netns: network-namespace tests of init's networking, the QEMU enclosure
    iputils-ping    # ping: the QEMU scenarios ping deployed compute modules
    mmdebstrap      # the Debian golden image of the QEMU scenarios (deploy-linux, capture)
    openssl         # openssl passwd: the scenario user's password hash
    zstd            # make bench: the image's compressed size
    etcd-server     # etcd: the pair's metadata store, leases and election (clusterd, tests)
    etcd-client     # etcdctl: looks into the test clusters
    protobuf-compiler # protoc: etcd-client's gRPC code is generated at build time
    libprotobuf-dev # google/protobuf/*.proto, which etcd-client's protos import
    keepalived      # make bench: the named peer of the pair's takeover (VRRP)
    libiscsi-bin    # iscsi-test-cu (the iSCSI conformance suite), iscsi-inq, iscsi-perf
    qemu-block-extra # QEMU's iscsi:// block driver (qemu-img, qemu-io, the VMs)
    tgt             # make bench: Debian's userspace iSCSI target, the named peer
    chromium        # make test: the web console in a real browser (headless)
    chromium-driver # chromedriver: WebDriver for it (Selenium, tests/python/test_ui.py)
)

find_missing() {
    missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
}

# Two rounds: installing one package can remove another (Debian's qemu-system-x86 removes a
# backported qemu-utils, taking qemu-img with it); the second round puts the matching one back.
find_missing
for round in 1 2; do
    ((${#missing[@]})) || break
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: run as root (or install ${missing[*]} yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    [ "$round" = 1 ] && apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    find_missing
done
if ((${#missing[@]})); then
    echo "error: still missing after installing: ${missing[*]}" >&2
    exit 1
fi
if ! command -v cargo >/dev/null; then
    echo "error: cargo is missing; install Rust with rustup (rust-toolchain.toml pins the version)" >&2
    exit 1
fi
