#!/usr/bin/env bash
# iSCSI benchmark: storaged's iSCSI target vs Debian's tgt (userspace iSCSI target) serving a
# raw file of the same content vs storaged's NBD server, one run, interleaved. Writes
# target/bench/iscsi.md (a section of BENCHMARKS.md, see scripts/bench.sh).
#
# Clients: QEMU's block layer for the sequential figures (`qemu-img bench`, the same client
# over iscsi:// and nbd://), libiscsi's `iscsi-perf` for 4 KiB random reads over iSCSI, and
# fio's libnbd engine for the same over NBD. Needs root (tgtd) and about 3 GiB free.
#
# Environment: BENCH_DIR (work directory, removed at exit), BENCH_RUNS (default 3),
# BENCH_PORT (first of three 127.0.0.1 ports, default 10950).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
STORAGED=$TARGET/release/storaged
WORK=${BENCH_DIR:-$REPO/var/bench-iscsi}
RUNS=${BENCH_RUNS:-3}
PORT=${BENCH_PORT:-10950}
OUT=${BENCH_OUT:-$REPO/target/bench/iscsi.md}
SIZE_MIB=1024
S_ISCSI=$PORT
S_NBD=$((PORT + 1))
TGT=$((PORT + 2))
TGT_CONTROL=$((PORT % 1000 + 50))

log() { printf '[bench-iscsi %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (tgtd)"
for tool in tgtd tgtadm iscsi-perf qemu-img fio; do
    command -v "$tool" >/dev/null || die "$tool is missing (make deps installs it)"
done
[ -x "$STORAGED" ] || cargo build --locked --release -p storaged --manifest-path "$REPO/Cargo.toml"

PIDS=()
cleanup() {
    local rc=$?
    set +e
    tgtadm -C "$TGT_CONTROL" --op delete --mode system >/dev/null 2>&1
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        sleep 0.5
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    [ $rc -eq 0 ] || log "failed (exit $rc)"
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK/data"

# The content: 1 GiB of incompressible bytes, as a raw file (tgt's) and a storaged volume.
log "making a ${SIZE_MIB} MiB image"
head -c $((SIZE_MIB << 20)) \
    < <(openssl enc -aes-128-ctr -pass pass:streamer -nosalt -pbkdf2 </dev/zero 2>/dev/null) \
    >"$WORK/disk.raw"

export STORAGED_CONTROL=$WORK/storaged.sock
"$STORAGED" serve --data-dir "$WORK/data" --nbd-listen "127.0.0.1:$S_NBD" \
    --iscsi-listen "127.0.0.1:$S_ISCSI" >"$WORK/storaged.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$STORAGED_CONTROL" ] && break; sleep 0.1; done
ID=$("$STORAGED" volume import --name bench --writable "$WORK/disk.raw" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$STORAGED" export add "$ID" >/dev/null
S_URL=iscsi://127.0.0.1:$S_ISCSI/iqn.2026-12.org.streamer:$ID/0
N_URL=nbd://127.0.0.1:$S_NBD/$ID

cp "$WORK/disk.raw" "$WORK/tgt.raw"
tgtd -f -C "$TGT_CONTROL" --iscsi "portal=127.0.0.1:$TGT" >"$WORK/tgtd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do tgtadm -C "$TGT_CONTROL" --op show --mode system >/dev/null 2>&1 && break; sleep 0.1; done
TGT_IQN=iqn.2026-12.org.streamer.bench:tgt
tgtadm -C "$TGT_CONTROL" --lld iscsi --op new --mode target --tid 1 -T "$TGT_IQN"
tgtadm -C "$TGT_CONTROL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$WORK/tgt.raw"
tgtadm -C "$TGT_CONTROL" --lld iscsi --op bind --mode target --tid 1 -I ALL
T_URL=iscsi://127.0.0.1:$TGT/$TGT_IQN/1

# MB/s of `qemu-img bench` (1 MiB requests, 8 in flight) over the whole disk.
seq_mbs() {
    local url=$1 write=$2 t0 t1
    t0=$(date +%s.%N)
    qemu-img bench -f raw $write -q -c "$SIZE_MIB" -s 1M -d 8 "$url" >/dev/null
    t1=$(date +%s.%N)
    python3 -c "print(round($SIZE_MIB / ($t1 - $t0)))"
}
# 4 KiB random reads per second over iSCSI: iscsi-perf, 32 in flight, 10 s.
iops_iscsi() {
    iscsi-perf -r -b 8 -m 32 -t 10 -i iqn.2026-12.org.streamer.bench:client "$1" 2>&1 |
        tr '\r' '\n' | grep -oE 'iops average [0-9]+' | tail -1 | grep -oE '[0-9]+'
}
# The same over NBD: fio's libnbd engine.
iops_nbd() {
    fio --name=r --ioengine=nbd --uri="$1" --rw=randread --bs=4k --iodepth=32 \
        --runtime=10 --time_based --output-format=json 2>>"$WORK/fio.log" |
        python3 -c "import json, sys; t = sys.stdin.read(); print(round(json.loads(t[t.index('{'):])['jobs'][0]['read']['iops']))"
}

declare -A R
for run in $(seq "$RUNS"); do
    log "run $run of $RUNS"
    for w in read write; do
        flag=""; [ $w = write ] && flag=-w
        R[$w,ours,$run]=$(seq_mbs "$S_URL" "$flag")
        R[$w,tgt,$run]=$(seq_mbs "$T_URL" "$flag")
        R[$w,nbd,$run]=$(seq_mbs "$N_URL" "$flag")
    done
    R[iops,ours,$run]=$(iops_iscsi "$S_URL")
    R[iops,tgt,$run]=$(iops_iscsi "$T_URL")
    R[iops,nbd,$run]=$(iops_nbd "$N_URL")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() {
    local key=$1 label=$2 o=() t=() n=()
    for run in $(seq "$RUNS"); do
        o+=("${R[$key,ours,$run]}"); t+=("${R[$key,tgt,$run]}"); n+=("${R[$key,nbd,$run]}")
    done
    local mo mt mn
    mo=$(median "${o[@]}"); mt=$(median "${t[@]}"); mn=$(median "${n[@]}")
    echo "| $label | ${o[*]} | ${t[*]} | ${n[*]} | $(python3 -c "print(f'{$mo/$mt:.2f}×')") |"
}
{
    echo "## iSCSI: storaged's target beside tgt and the NBD server"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git -C "$REPO" rev-parse --short HEAD) by"
    echo "\`make bench\` (\`scripts/bench-iscsi.sh\`, $RUNS runs interleaved, each value listed): a 1 GiB volume of"
    echo "incompressible bytes in storaged served over iSCSI and over NBD, and the same bytes as a"
    echo "raw file served by Debian's \`tgt\` (userspace iSCSI target, the named peer), all on"
    echo "127.0.0.1. Sequential: \`qemu-img bench\` (1 MiB requests, 8 in flight, the whole disk),"
    echo "the same client for all three. Random: 4 KiB reads, 32 in flight, 10 s, by libiscsi's"
    echo "\`iscsi-perf\` over iSCSI and fio's libnbd engine over NBD. Goal (issue 23): ≥ 1.0× tgt."
    echo
    echo "| | storaged iSCSI | tgt | storaged NBD | storaged iSCSI / tgt (medians) |"
    echo "|---|---:|---:|---:|---:|"
    row read "sequential read, MB/s"
    row write "sequential write, MB/s"
    row iops "4 KiB random read, IOPS"
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
