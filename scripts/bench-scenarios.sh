#!/usr/bin/env bash
# The QEMU scenarios' timings (deploy request → compute module's loader message or login
# prompt, capture request → golden image ready, the pair's active VM killed → first write
# acknowledged on the virtual IP; the longest pause of a compute module's I/O loop when the
# appliance serving its volume is killed), under TCG, into target/bench/scenarios.md.
# Needs root and `make image`.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
out=$REPO/target/bench
mkdir -p "$out"
rec=$out/scenarios.tsv
rm -f "$rec"
STREAMER_BENCH_RECORD=$rec cargo test --locked -p streamer-qemu-tests \
    --test deploy_hpe --test deploy_linux --test capture --test failover_management --test failover \
    -- --test-threads=1
{
    echo "## Virtual hardware: deploy and capture in QEMU (TCG)"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git -C "$REPO" rev-parse --short HEAD) by"
    echo "\`make bench\` (\`scripts/bench-scenarios.sh\`): the scenario tests of qemu-tests/ against the"
    echo "appliance image in QEMU, compute modules as OVMF VMs booting their OS volume over NBD from"
    echo "the appliance across the enclosure bridge; all under TCG on 2 cores (the appliance and the"
    echo "modules share them). The pair's takeover: two appliance VMs and the witness on one bridge,"
    echo "the active VM's QEMU killed. No peer tool: HPE's appliance is not available here."
    echo
    echo "| measurement | seconds |"
    echo "|---|---|"
    while IFS=$'\t' read -r what secs; do
        echo "| $what | $secs |"
    done <"$rec"
} >"$out/scenarios.md"
echo "bench-scenarios: wrote $out/scenarios.md"
