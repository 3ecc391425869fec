#!/usr/bin/env bash
# Replicated vs unreplicated writes over NBD (storaged's replication to a second store on
# this host) beside QEMU's synchronous mirror, into target/bench/replication.md.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
out=$REPO/target/bench
mkdir -p "$out"
cargo build --locked --release -p storaged --example replicated_write
{
    echo "## Replicated storage: writes over NBD beside QEMU's synchronous mirror"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git -C "$REPO" rev-parse --short HEAD) by"
    echo "\`make bench\` (\`scripts/bench-replication.sh\`, \`replicated_write --count 512 --depth 8 --second-copy /dev/shm\`, 3 runs):"
    echo "\`qemu-img bench -w\` over NBD against a storaged store, a storaged store replicating"
    echo "synchronously to a second one (storaged's replication, plain TCP on loopback), and QEMU's"
    echo "synchronous mirror (\`qemu-storage-daemon\`, \`blockdev-mirror copy-mode=write-blocking\` of a"
    echo "raw file to a raw file behind \`qemu-nbd\`, the mirror's filter node exported over NBD). All"
    echo "on this one host, sharing its two CPUs. The second copy (our replica's store, the mirror's"
    echo "target file) is on a device of its own, \`/dev/shm\`, as each node of a pair has its disk:"
    echo "with both on this host's one disk, every replicated byte costs that disk twice. Goals"
    echo "(issue 22): replicated ≥ 0.8× unreplicated and ≥ 1.0× the mirror."
    for run in 1 2 3; do
        echo
        echo "Run $run:"
        echo
        "$REPO/target/release/examples/replicated_write" --count 512 --depth 8 --second-copy /dev/shm
    done
} >"$out/replication.md"
echo "bench-replication: wrote $out/replication.md"
