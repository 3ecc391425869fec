#!/usr/bin/env bash
# `make bench`: runs every benchmark and assembles BENCHMARKS.md from their sections
# (target/bench/*.md). A section whose benchmark was not run keeps its last committed text
# only if you copy it there yourself: each run writes fresh numbers.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$REPO/target/bench"
if [ "${SKIP_STORAGED:-}" != 1 ]; then
    "$REPO/scripts/bench-storaged.sh"
fi
"$REPO/scripts/bench-deployd.sh"
"$REPO/scripts/bench-planscript.sh"
"$REPO/scripts/bench-replication.sh"
if [ "$(id -u)" = 0 ]; then
    # storaged's iSCSI target beside tgt and the NBD server.
    "$REPO/scripts/bench-iscsi.sh"
    "$REPO/scripts/bench-deploy.sh"
    # The HA pair in network namespaces: takeover vs keepalived, redb vs etcd writes.
    "$REPO/target/release/pair-bench" --kills 10 >"$REPO/target/bench/pair.md"
else
    echo "bench: skipping bench-deploy.sh and pair-bench (need root)" >&2
fi
# The appliance image in QEMU: boot time, image size, idle memory (needs `make image`).
"$REPO/target/release/streamer-vm" bench-boot --runs 5 --dir "$REPO/target/bench/boot-vms" \
    --out "$REPO/target/bench/boot.md" --commit "$(git -C "$REPO" rev-parse --short HEAD)"
if [ "$(id -u)" = 0 ]; then
    # storaged's iSCSI target beside the kernel's (LIO) inside the appliance VM.
    "$REPO/target/release/streamer-vm" bench-lio --runs 3 --dir "$REPO/target/bench/lio-vm" \
        --out "$REPO/target/bench/iscsi-lio.md" --commit "$(git -C "$REPO" rev-parse --short HEAD)"
fi
"$REPO/scripts/bench-scenarios.sh"
{
    echo "# Benchmarks"
    echo
    echo "Every figure is measured by \`make bench\` on this project's machine (2 cores, 24 GiB); each"
    echo "section says when, at which commit, and under what load. Peers named by the issues are"
    echo "measured side by side in the same run."
    for s in storaged iscsi iscsi-lio deployd planscript replication deploy pair boot scenarios; do
        f=$REPO/target/bench/$s.md
        if [ -f "$f" ]; then
            echo
            cat "$f"
        fi
    done
} >"$REPO/BENCHMARKS.md"
echo "bench: wrote $REPO/BENCHMARKS.md"
