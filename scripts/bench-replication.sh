#!/usr/bin/env bash
# Replicated vs unreplicated writes over NBD (storaged's replication to a second store on
# this host) beside QEMU's synchronous mirror, into target/bench/replication.md.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
out=$REPO/target/bench
mkdir -p "$out"
cargo build --locked --release -p storaged --example replicated_write
bin=$REPO/target/release/examples/replicated_write
{
    echo "## Replicated storage: writes over NBD beside QEMU's synchronous mirror"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git -C "$REPO" rev-parse --short HEAD) by"
    echo "\`make bench\` (\`scripts/bench-replication.sh\`: \`replicated_write --count 512 --depth 8 --second-copy /dev/shm\`,"
    echo "3 runs with \`--pin\` and 3 without, then 3 with \`--pin --tls\`): \`qemu-img bench -w\` over NBD"
    echo "against a storaged store, a storaged store replicating synchronously to a second one"
    echo "(storaged's replication on loopback: plain TCP, as the tests on one host run it, and, with"
    echo "\`--tls\`, mutual TLS with a pair's certificates, as a pair of appliances runs it), and QEMU's"
    echo "synchronous mirror (\`qemu-storage-daemon\`, \`blockdev-mirror"
    echo "copy-mode=write-blocking\` of a raw file to a raw file behind \`qemu-nbd\`, the mirror's filter"
    echo "node exported over NBD). The second copy (our replica's store, the mirror's target file) is"
    echo "on a device of its own, \`/dev/shm\`, as each node of a pair has its disk. With \`--pin\` each"
    echo "node has a CPU of its own too, as on two machines: the client and the serving node (our"
    echo "owner, the unreplicated store, the mirror's \`qemu-storage-daemon\`) on CPU 0, the second"
    echo "copy's server (our replica, the mirror's \`qemu-nbd\`) on CPU 1. Without it all share this"
    echo "host's two CPUs. Goals (issue 22): replicated ≥ 0.8× unreplicated and ≥ 1.0× the mirror."
    for flags in --pin "" "--pin --tls"; do
        for run in 1 2 3; do
            echo
            case "$flags" in
            --pin) echo "Run $run, each node on a CPU of its own (\`--pin\`):" ;;
            "") echo "Run $run, all sharing the two CPUs:" ;;
            *) echo "Run $run, each node on a CPU of its own, replication over mutual TLS (\`$flags\`):" ;;
            esac
            echo
            # shellcheck disable=SC2086 # $flags: none, one or two flags
            "$bin" --count 512 --depth 8 --second-copy /dev/shm $flags
        done
    done
} >"$out/replication.md"
echo "bench-replication: wrote $out/replication.md"
