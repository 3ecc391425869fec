#!/usr/bin/env bash
# storaged benchmark: storaged vs qemu-nbd (raw and a qcow2 overlay) vs a local copy, all in one
# run on the same 4 GiB golden image. Writes its section of BENCHMARKS.md (see scripts/bench.sh).
#
# Called by `make bench`, which builds target/release/storaged and the clone_time example
# first; this script builds nothing. Needs root (it drops the page cache) and, under
# BENCH_DIR, about 20 GiB of free space on the file system being measured.
#
# Environment:
#   BENCH_DIR    work directory (default: <repo>/var/bench); removed at exit
#   BENCH_PORT   first of four consecutive 127.0.0.1 TCP ports (default 10900)
#   BENCH_RUNS   repetitions of every figure (default 3; the median is reported)
#   BENCH_OUT    report file (default: <repo>/target/bench/storaged.md)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
STORAGED=$TARGET/release/storaged
CLONE_TIME=$TARGET/release/examples/clone_time
WORK=${BENCH_DIR:-$REPO/var/bench}
PORT=${BENCH_PORT:-10900}
RUNS=${BENCH_RUNS:-3}
OUT=${BENCH_OUT:-$REPO/target/bench/storaged.md}

SIZE=$((4 << 30))          # the golden image
CHUNK_MIB=64               # image layout unit: every 16th 64 MiB chunk is left a hole
S_PORT=$PORT               # storaged
QR_PORT=$((PORT + 1))      # qemu-nbd, raw
QQ_PORT=$((PORT + 2))      # qemu-nbd, qcow2 overlay
QW_PORT=$((PORT + 3))      # qemu-nbd, writable targets
FIO_RUNTIME=${BENCH_FIO_RUNTIME:-10}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- preconditions -------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "run as root: the cold-cache runs drop the page cache"
for tool in nbdcopy nbdinfo qemu-nbd qemu-img fio fincore openssl python3 ss; do
    command -v "$tool" >/dev/null || die "$tool is missing (make deps installs it)"
done
[ -x "$STORAGED" ] || die "$STORAGED is missing: run 'make bench', which builds it"
[ -x "$CLONE_TIME" ] || die "$CLONE_TIME is missing: run 'make bench', which builds it"
for p in "$S_PORT" "$QR_PORT" "$QQ_PORT" "$QW_PORT"; do
    if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is in use; set BENCH_PORT"; fi
done

# --- cleanup -------------------------------------------------------------------------------

PIDS=()
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
    [ $rc -eq 0 ] || log "failed (exit $rc); work directory removed"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

rm -rf "$WORK"
mkdir -p "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
builds() { ps -eo comm= | grep -cxE 'rustc|cargo|cc|cc1|ld|build-script-.*' || true; }
BUILDS_START=$(builds)
IMG=$WORK/base.raw
DATA=$WORK/data
export STORAGED_CONTROL=$WORK/storaged.sock
export STORAGED_LOG=warn

# --- helpers -------------------------------------------------------------------------------

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# Seconds (float) taken by a command; its output goes to the log.
timed() {
    local t0=$EPOCHREALTIME
    "$@" >>"$WORK/commands.log" 2>&1 || die "failed: $* (see output above)"
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.6f}')" "$t0" "$EPOCHREALTIME"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mbps() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6 / float(sys.argv[2]):.0f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
verdict() { python3 -c "import sys; print('pass' if float(sys.argv[1]) >= float(sys.argv[2]) else 'FAIL')" "$1" "$2"; }
json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
meminfo_cached() { awk '/^Cached:/ {printf "%.0f\n", $2 * 1024}' /proc/meminfo; }
# Bytes of a file resident in the page cache.
resident() { fincore -b -n -o RES "$@" | awk '{s += $1} END {printf "%.0f\n", s}'; }
gib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 2**30:.2f}')" "$1"; }

wait_nbd() {
    local uri=$1 i
    for i in $(seq 100); do
        nbdinfo --size "$uri" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "no NBD server answers at $uri"
}
# qemu-nbd in the foreground (so we own its pid), on 127.0.0.1 only.
QEMU_PID=
start_qemu() {
    local port=$1 name=$2 format=$3 file=$4; shift 4
    qemu-nbd "$@" -f "$format" -x "$name" -b 127.0.0.1 -p "$port" --persistent --shared=8 \
        "$file" >>"$WORK/qemu-nbd.log" 2>&1 &
    QEMU_PID=$!
    PIDS+=("$QEMU_PID")
    wait_nbd "nbd://127.0.0.1:$port/$name"
}
multi_conn() { nbdinfo --can multi-conn "$1" && echo yes || echo no; }

# --- the golden image ----------------------------------------------------------------------

log "creating the 4 GiB golden image (AES-CTR keystream, every 16th $CHUNK_MIB MiB chunk a hole)"
truncate -s "$SIZE" "$IMG"
# A deterministic, incompressible stream; dd's fullblock reads take exactly one chunk each.
openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:streamer-bench </dev/zero 2>/dev/null | {
    for ((i = 0; i < SIZE / (CHUNK_MIB << 20); i++)); do
        if ((i % 16 == 15)); then continue; fi
        dd of="$IMG" bs=1M count=$CHUNK_MIB seek=$((i * CHUNK_MIB)) iflag=fullblock \
            conv=notrunc status=none
    done
} || true
IMG_ALLOC=$(($(stat -c %b "$IMG") * 512))
[ "$IMG_ALLOC" -ge $((SIZE * 15 / 16)) ] || die "image has only $IMG_ALLOC allocated bytes"
gzip_ratio=$(head -c $((64 << 20)) "$IMG" | gzip -1 | wc -c)

# --- servers -------------------------------------------------------------------------------

log "starting storaged and importing the image as golden image 'golden'"
"$STORAGED" serve --data-dir "$DATA" --nbd-listen "127.0.0.1:$S_PORT" \
    --control "$STORAGED_CONTROL" >>"$WORK/storaged.log" 2>&1 &
S_PID=$!
PIDS+=("$S_PID")
for _ in $(seq 100); do [ -S "$STORAGED_CONTROL" ] && break; sleep 0.1; done
[ -S "$STORAGED_CONTROL" ] || die "storaged did not start (see $WORK/storaged.log)"

sd() { "$STORAGED" "$@"; }
t_import=$(timed sd volume import "$IMG" --name golden)
GOLDEN_JSON=$(sd volume info golden --json)
GOLDEN_LAYER=$(json_field layer <<<"$GOLDEN_JSON")
GOLDEN_ALLOC=$(json_field allocated_bytes <<<"$GOLDEN_JSON")
GOLDEN_DATA=$DATA/layers/$GOLDEN_LAYER.data
[ -f "$GOLDEN_DATA" ] || die "golden image data file $GOLDEN_DATA not found"
sd export add golden >/dev/null
sd volume clone golden --name clone >/dev/null
sd export add clone >/dev/null
S_GOLDEN=nbd://127.0.0.1:$S_PORT/golden
S_CLONE=nbd://127.0.0.1:$S_PORT/clone

qemu-img create -q -f qcow2 -b "$IMG" -F raw "$WORK/overlay.qcow2"
start_qemu "$QR_PORT" base raw "$IMG" -r
start_qemu "$QQ_PORT" overlay qcow2 "$WORK/overlay.qcow2" -r
Q_RAW=nbd://127.0.0.1:$QR_PORT/base
Q_QCOW=nbd://127.0.0.1:$QQ_PORT/overlay

# Content check: every server must serve the same bytes, or the comparison means nothing.
sum_of() { nbdcopy "$1" - | sha256sum | cut -d' ' -f1; }
want=$(sha256sum <"$IMG" | cut -d' ' -f1)
for uri in "$S_GOLDEN" "$S_CLONE" "$Q_RAW" "$Q_QCOW"; do
    [ "$(sum_of "$uri")" = "$want" ] || die "$uri does not serve the image's content"
done

# --- (a) sequential read -------------------------------------------------------------------

READ_TARGETS=(
    "storaged golden image|nbdcopy $S_GOLDEN null:"
    "storaged clone|nbdcopy $S_CLONE null:"
    "qemu-nbd raw|nbdcopy $Q_RAW null:"
    "qemu-nbd qcow2 overlay|nbdcopy $Q_QCOW null:"
    "local copy (dd bs=1M)|dd if=$IMG of=/dev/null bs=1M status=none"
    "local nbdcopy (file to null:)|nbdcopy $IMG null:"
)
declare -A READ
for cache in warm cold; do
    log "sequential read, $cache cache"
    if [ $cache = warm ]; then cat "$IMG" "$GOLDEN_DATA" >/dev/null; fi
    for t in "${READ_TARGETS[@]}"; do
        label=${t%%|*} cmd=${t#*|} times=()
        for ((r = 0; r < RUNS; r++)); do
            if [ $cache = cold ]; then drop_caches; fi
            # shellcheck disable=SC2086  # cmd is a word list by construction
            times+=("$(timed $cmd)")
        done
        READ[$cache,$label]=$(mbps "$SIZE" "$(median "${times[@]}")")
        runs=()
        for x in "${times[@]}"; do runs+=("$(mbps "$SIZE" "$x")"); done
        READ[$cache,$label,runs]=${runs[*]}
        log "  $label: ${READ[$cache,$label]} MB/s (runs: ${runs[*]})"
    done
done

# --- (b) sequential write ------------------------------------------------------------------

log "sequential write (source: the image, warm in the page cache; fresh target each run)"
declare -A WRITE WRITE_CONNS
write_run() {
    local label=$1 times=() r uri t
    for ((r = 0; r < RUNS; r++)); do
        case $label in
        "storaged clone"* )
            sd volume clone golden --name "w$r" >/dev/null
            sd export add "w$r" >/dev/null
            uri=nbd://127.0.0.1:$S_PORT/w$r ;;
        "qemu-nbd raw (writable copy)")
            cp --sparse=always "$IMG" "$WORK/rw.raw"
            start_qemu "$QW_PORT" rw raw "$WORK/rw.raw"
            uri=nbd://127.0.0.1:$QW_PORT/rw ;;
        "qemu-nbd qcow2 overlay")
            qemu-img create -q -f qcow2 -b "$IMG" -F raw "$WORK/rw.qcow2"
            start_qemu "$QW_PORT" rw qcow2 "$WORK/rw.qcow2"
            uri=nbd://127.0.0.1:$QW_PORT/rw ;;
        esac
        [ $r -gt 0 ] || WRITE_CONNS[$label]=$(multi_conn "$uri")
        cat "$IMG" >/dev/null
        sync
        case $label in
        *"1 connection"*) t=$(timed nbdcopy --connections=1 "$IMG" "$uri") ;;
        *) t=$(timed nbdcopy "$IMG" "$uri") ;;
        esac
        times+=("$t")
        case $label in
        "storaged clone"*)
            # The daemon syncs a layer when its last connection closes; wait for it.
            for _ in $(seq 600); do
                [ "$(sd volume info "w$r" --json | json_field connections)" = 0 ] && break
                sleep 0.1
            done
            sync
            sd volume delete "w$r" >/dev/null ;;
        *)
            stop_pid "$QEMU_PID"
            sync
            rm -f "$WORK/rw.raw" "$WORK/rw.qcow2" ;;
        esac
    done
    WRITE[$label]=$(mbps "$SIZE" "$(median "${times[@]}")")
    local runs=() x
    for x in "${times[@]}"; do runs+=("$(mbps "$SIZE" "$x")"); done
    WRITE[$label,runs]=${runs[*]}
    log "  $label: ${WRITE[$label]} MB/s (runs: ${runs[*]})"
}
WRITE_TARGETS=("storaged clone" "storaged clone, 1 connection" "qemu-nbd raw (writable copy)" "qemu-nbd qcow2 overlay")
for t in "${WRITE_TARGETS[@]}"; do write_run "$t"; done

# --- (c) 4 KiB random read IOPS ------------------------------------------------------------

FIO_JOBS=2
log "4 KiB random read, warm cache, fio nbd engine, iodepth 32 x $FIO_JOBS jobs, ${FIO_RUNTIME}s"
cat "$IMG" "$GOLDEN_DATA" >/dev/null
declare -A IOPS
fio_iops() {
    fio --name=randread --ioengine=nbd --uri="$1" --rw=randread --bs=4k --iodepth=32 \
        --numjobs=$FIO_JOBS --group_reporting --time_based --runtime=$FIO_RUNTIME \
        --output-format=json 2>>"$WORK/commands.log" |
        python3 -c "import json, sys; t = sys.stdin.read(); print(round(json.loads(t[t.index('{'):])['jobs'][0]['read']['iops']))"
}
FIO_TARGETS=("storaged golden image|$S_GOLDEN" "storaged clone|$S_CLONE" "qemu-nbd raw|$Q_RAW" "qemu-nbd qcow2 overlay|$Q_QCOW")
for t in "${FIO_TARGETS[@]}"; do
    label=${t%%|*} uri=${t#*|} vals=()
    for ((r = 0; r < RUNS; r++)); do vals+=("$(fio_iops "$uri")"); done
    IOPS[$label]=$(median "${vals[@]}")
    IOPS[$label,runs]=${vals[*]}
    log "  $label: ${IOPS[$label]} IOPS (runs: ${vals[*]})"
done

# --- (d) clone time ------------------------------------------------------------------------

CLONE_RUNS=21
log "clone time: library call ($CLONE_RUNS clones per size)"
LIB_OUT=$("$CLONE_TIME" "$WORK/clone-store" $CLONE_RUNS $((1 << 30)) $((64 << 30)))
rm -rf "$WORK/clone-store"
declare -A CLONE_LIB
while read -r line; do
    size=$(sed -E 's/.*size=([0-9]+).*/\1/' <<<"$line")
    CLONE_LIB[$size]=$line
done <<<"$LIB_OUT"

log "clone time: end to end, 'storaged volume clone' ($CLONE_RUNS per size)"
declare -A CLONE_CLI
for gibs in 1 64; do
    sd volume create --size "${gibs}G" --name "p${gibs}" >/dev/null
    sd volume snapshot "p${gibs}" --name "p${gibs}-frozen" >/dev/null
    times=()
    for ((r = 0; r < CLONE_RUNS; r++)); do
        times+=("$(timed sd volume clone "p${gibs}-frozen" --name "c${gibs}-$r")")
    done
    CLONE_CLI[$gibs]=$(python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:.1f}')" "$(median "${times[@]}")")
    CLONE_CLI[$gibs,max]=$(python3 -c "import sys; print(f'{max(map(float, sys.argv[1:])) * 1000:.1f}')" "${times[@]}")
    for ((r = 0; r < CLONE_RUNS; r++)); do sd volume delete "c${gibs}-$r" >/dev/null; done
    sd volume delete "p${gibs}" >/dev/null
    sd volume delete "p${gibs}-frozen" >/dev/null
done

# --- (e) page cache after 8 clones are read ------------------------------------------------

log "page cache: 8 clones of the golden image, each read end to end over NBD, cold start"
PC_NAMES=()
for i in $(seq 8); do
    sd volume clone golden --name "pc$i" >/dev/null
    sd export add "pc$i" >/dev/null
    PC_NAMES+=("pc$i")
done
drop_caches
cached0=$(meminfo_cached)
PC_STEPS=()
for n in "${PC_NAMES[@]}"; do
    nbdcopy "nbd://127.0.0.1:$S_PORT/$n" null:
    PC_STEPS+=("$(gib $(($(meminfo_cached) - cached0)))")
done
cached_delta=$(($(meminfo_cached) - cached0))
base_res=$(resident "$GOLDEN_DATA")
clone_files=()
for n in "${PC_NAMES[@]}"; do
    l=$(sd volume info "$n" --json | json_field layer)
    clone_files+=("$DATA/layers/$l.data" "$DATA/layers/$l.map")
done
clones_res=$(resident "${clone_files[@]}")
pc_ratio=$(ratio "$cached_delta" "$GOLDEN_ALLOC")
pc_file_ratio=$(ratio "$((base_res + clones_res))" "$GOLDEN_ALLOC")
# "≈ 1×": at most 10 % over the base's data.
pc_verdict=$(python3 -c "import sys; print('pass' if float(sys.argv[1]) <= 1.10 else 'FAIL')" "$pc_file_ratio")
log "  Cached grew $(gib "$cached_delta") GiB; golden image data resident $(gib "$base_res") GiB; clones' own files $(gib "$clones_res") GiB"

# --- report --------------------------------------------------------------------------------

log "writing $OUT"
W='$BENCH_DIR'
cat >"$WORK/commands.txt" <<EOF
# golden image: 64 MiB chunks of an AES-CTR keystream, chunk i at i*64 MiB; chunks 15, 31, 47, 63 stay holes
truncate -s 4G $W/base.raw
openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:streamer-bench </dev/zero |
    dd of=$W/base.raw bs=1M count=64 seek=\$((i * 64)) iflag=fullblock conv=notrunc   # per chunk
# servers (all on 127.0.0.1)
export STORAGED_CONTROL=$W/storaged.sock STORAGED_LOG=warn
storaged serve --data-dir $W/data --nbd-listen 127.0.0.1:$S_PORT --control $W/storaged.sock
storaged volume import $W/base.raw --name golden && storaged export add golden
storaged volume clone golden --name clone && storaged export add clone
qemu-img create -f qcow2 -b $W/base.raw -F raw $W/overlay.qcow2
qemu-nbd -r -f raw -x base -b 127.0.0.1 -p $QR_PORT --persistent --shared=8 $W/base.raw
qemu-nbd -r -f qcow2 -x overlay -b 127.0.0.1 -p $QQ_PORT --persistent --shared=8 $W/overlay.qcow2
# (a) sequential read; every cold run starts with: sync; echo 3 > /proc/sys/vm/drop_caches
nbdcopy nbd://127.0.0.1:$S_PORT/golden null:
nbdcopy nbd://127.0.0.1:$S_PORT/clone null:
nbdcopy nbd://127.0.0.1:$QR_PORT/base null:
nbdcopy nbd://127.0.0.1:$QQ_PORT/overlay null:
dd if=$W/base.raw of=/dev/null bs=1M
nbdcopy $W/base.raw null:
# (b) sequential write into a fresh target per run, each after: cat base.raw >/dev/null; sync
storaged volume clone golden --name wN && storaged export add wN
nbdcopy $W/base.raw nbd://127.0.0.1:$S_PORT/wN                 # and with --connections=1
cp --sparse=always $W/base.raw $W/rw.raw
qemu-nbd -f raw -x rw -b 127.0.0.1 -p $QW_PORT --persistent --shared=8 $W/rw.raw
qemu-img create -f qcow2 -b $W/base.raw -F raw $W/rw.qcow2
qemu-nbd -f qcow2 -x rw -b 127.0.0.1 -p $QW_PORT --persistent --shared=8 $W/rw.qcow2
nbdcopy $W/base.raw nbd://127.0.0.1:$QW_PORT/rw
# (c) random read, URI as in (a)
fio --name=randread --ioengine=nbd --uri=URI --rw=randread --bs=4k --iodepth=32 \\
    --numjobs=$FIO_JOBS --group_reporting --time_based --runtime=$FIO_RUNTIME --output-format=json
# (d) clone time
target/release/examples/clone_time $W/clone-store $CLONE_RUNS 1073741824 68719476736
storaged volume create --size 64G --name p64 && storaged volume snapshot p64 --name p64-frozen
storaged volume clone p64-frozen --name c64-N      # timed, $CLONE_RUNS times; the same for 1G
# (e) page cache
storaged volume clone golden --name pcN && storaged export add pcN   # N = 1..8
sync; echo 3 > /proc/sys/vm/drop_caches; grep Cached: /proc/meminfo
nbdcopy nbd://127.0.0.1:$S_PORT/pcN null:          # N = 1..8, then Cached: again
fincore -b $W/data/layers/GOLDEN_LAYER.data $W/data/layers/CLONE_LAYER.{data,map}
EOF
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
CONCURRENT_NOTE="$BUILDS_START compiler/build processes (cargo, rustc, cc, ld) were running when the
run started and $(builds) when it ended; the load averages above show how busy the machine was."
mnt=$(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$WORK")
dev=$(findmnt -no SOURCE -T "$WORK")
disk=$(lsblk -no NAME,SIZE,ROTA,TYPE "$dev" 2>/dev/null | head -1 | awk '{print $1 ", " $2 ", " ($3 ? "rotational" : "non-rotational") ", " $4}')
lib_field() { sed -E "s/.*$2=([0-9]+).*/\1/" <<<"${CLONE_LIB[$1]}"; }
us_to_ms() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1000:.2f}')" "$1"; }
ms_verdict() { python3 -c "import sys; print('pass' if float(sys.argv[1]) < 10 else 'FAIL')" "$1"; }
rel() { # MB/s row against a peer: storaged peer target
    echo "$(ratio "$1" "$2")× | ≥ $3× | $(verdict "$(ratio "$1" "$2")" "$3")"
}
{
    cat <<EOF
## storaged: volumes and NBD

Generated by \`make bench\` (\`scripts/bench-storaged.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'),
commit \`$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+dirty')\`. Every figure below was
measured in this one run, on the same image; each is the median of $RUNS runs (the runs are in
brackets). MB/s = 10^6 bytes per second of the 4 GiB virtual size.

### Machine

| | |
|---|---|
| CPUs | $(nproc) × $(lscpu | sed -n 's/^Model name: *//p' | head -1) |
| RAM | $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 2^20}' /proc/meminfo) |
| kernel | $(uname -r) |
| data dir file system | \`$mnt\` |
| disk | $disk |
| load average at start / end | $LOAD_START / $load_end |
| tools | $(nbdcopy --version | head -1), $(qemu-nbd --version | head -1), $(fio --version) |

The machine is shared: $CONCURRENT_NOTE

### Image

4 GiB raw file, $(gib "$IMG_ALLOC") GiB of it data (an AES-CTR keystream: gzip -1 leaves
$((gzip_ratio * 100 / (64 << 20))) % of the first 64 MiB), every 16th 64 MiB chunk a hole. Imported into storaged as
frozen golden image \`golden\` ($(gib "$GOLDEN_ALLOC") GiB allocated, import took ${t_import%.*} s); \`clone\` is
a writable clone of it. qemu-nbd serves the same raw file, and a qcow2 overlay with that file as
its backing file. Before measuring, all four exports were checked to serve the image's SHA-256.

### Sequential read over NBD (nbdcopy to null:)

nbdcopy defaults (multi-conn up to 4 connections, 64 requests in flight each, extents on, so
holes are skipped by every server alike). Multi-conn offered: storaged $(multi_conn "$S_GOLDEN"),
qemu-nbd raw $(multi_conn "$Q_RAW"), qemu-nbd qcow2 $(multi_conn "$Q_QCOW").
Warm: the files were in the page cache. Cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\`
before every run.

| target | warm MB/s | cold MB/s |
|---|---:|---:|
EOF
    for t in "${READ_TARGETS[@]}"; do
        label=${t%%|*}
        echo "| $label | ${READ[warm,$label]} [${READ[warm,$label,runs]}] | ${READ[cold,$label]} [${READ[cold,$label,runs]}] |"
    done
    cat <<EOF

| figure | storaged | peer | ratio | target | result |
|---|---:|---:|---:|---:|---|
EOF
    local_label="local copy (dd bs=1M)"
    for cache in warm cold; do
        for s in "storaged golden image" "storaged clone"; do
            for p in "qemu-nbd raw" "qemu-nbd qcow2 overlay"; do
                echo "| $cache read, $s vs $p | ${READ[$cache,$s]} | ${READ[$cache,$p]} | $(rel "${READ[$cache,$s]}" "${READ[$cache,$p]}" 1.0) |"
            done
            echo "| $cache read, $s vs $local_label | ${READ[$cache,$s]} | ${READ[$cache,$local_label]} | $(rel "${READ[$cache,$s]}" "${READ[$cache,$local_label]}" 0.8) |"
        done
    done
    cat <<EOF

### Sequential write over NBD (nbdcopy from the image file)

Source: the image file, read from the page cache. Each run writes into a fresh target: a new
clone of \`golden\` (storaged), a fresh \`cp\` of the raw file (qemu-nbd raw) or a new qcow2
overlay (qemu-nbd qcow2); the page cache is synced before each run. nbdcopy does not flush at
the end (no \`--flush\`), so this is the servers' write path into the page cache, with the
kernel's background writeback running as it would. nbdcopy opens up to 4 connections to a
server that offers multi-conn (column below); the "1 connection" row forces a single
connection to storaged.

| target | multi-conn | MB/s |
|---|---|---:|
EOF
    for t in "${WRITE_TARGETS[@]}"; do
        conns=${WRITE_CONNS[$t]}
        [[ $t == *"1 connection"* ]] && conns="$conns (1 used)"
        echo "| $t | $conns | ${WRITE[$t]} [${WRITE[$t,runs]}] |"
    done
    cat <<EOF

| figure | storaged | peer | ratio | target | result |
|---|---:|---:|---:|---:|---|
EOF
    for s in "storaged clone" "storaged clone, 1 connection"; do
        for p in "qemu-nbd raw (writable copy)" "qemu-nbd qcow2 overlay"; do
            echo "| write, $s vs $p | ${WRITE[$s]} | ${WRITE[$p]} | $(rel "${WRITE[$s]}" "${WRITE[$p]}" 1.0) |"
        done
    done
    cat <<EOF

### 4 KiB random read IOPS (fio nbd engine)

\`fio --ioengine=nbd --rw=randread --bs=4k --iodepth=32 --numjobs=$FIO_JOBS --group_reporting
--time_based --runtime=$FIO_RUNTIME\`, whole 4 GiB device, warm cache. numjobs=$FIO_JOBS opens
$FIO_JOBS connections.

| target | IOPS |
|---|---:|
EOF
    for t in "${FIO_TARGETS[@]}"; do
        label=${t%%|*}
        echo "| $label | ${IOPS[$label]} [${IOPS[$label,runs]}] |"
    done
    cat <<EOF

| figure | storaged | peer | ratio | target | result |
|---|---:|---:|---:|---:|---|
EOF
    for s in "storaged golden image" "storaged clone"; do
        for p in "qemu-nbd raw" "qemu-nbd qcow2 overlay"; do
            echo "| IOPS, $s vs $p | ${IOPS[$s]} | ${IOPS[$p]} | $(rel "${IOPS[$s]}" "${IOPS[$p]}" 1.0) |"
        done
    done
    cat <<EOF

### Clone time

Library: \`Store::clone_volume\` timed in-process by \`daemons/storaged/examples/clone_time.rs\`
($CLONE_RUNS clones of one frozen parent per size, each including its fsyncs and catalog
commit). End to end: \`storaged volume clone PARENT --name N\` against the running daemon,
wall time of the whole command (process start, control-socket connection, clone, reply).
The parents are empty volumes frozen by a snapshot; a clone never reads its parent's data, so
only the size matters.

| size | library median ms | library p90 / max ms | CLI median ms | CLI max ms | target | result (library median) |
|---|---:|---:|---:|---:|---:|---|
EOF
    for gibs in 1 64; do
        b=$((gibs << 30))
        med=$(us_to_ms "$(lib_field $b median_us)")
        echo "| $gibs GiB | $med | $(us_to_ms "$(lib_field $b p90_us)") / $(us_to_ms "$(lib_field $b max_us)") | ${CLONE_CLI[$gibs]} | ${CLONE_CLI[$gibs,max]} | < 10 ms | $(ms_verdict "$med") |"
    done
    cat <<EOF

### Page cache after reading 8 clones

Caches dropped, then 8 fresh clones of \`golden\` each read end to end (\`nbdcopy nbd://…/pcN
null:\`), one after the other. "Resident" is \`fincore\` of the golden image's layer data file
and of the clones' own layer files; "Cached" is the growth of \`Cached:\` in /proc/meminfo
(which also counts anything else the machine cached meanwhile).

| figure | value |
|---|---:|
| golden image data (allocated) | $(gib "$GOLDEN_ALLOC") GiB |
| Cached: growth after clone 1..8 | $(IFS=' '; echo "${PC_STEPS[*]}") GiB |
| Cached: growth after all 8 | $(gib "$cached_delta") GiB (${pc_ratio}× base) |
| golden image data file resident | $(gib "$base_res") GiB |
| the 8 clones' own files resident | $(gib "$clones_res") GiB |
| resident / base data | ${pc_file_ratio}× |
| target | ≈ 1× (pass if ≤ 1.10×) |
| result | $pc_verdict |

### Commands

\`\`\`sh
$(cat "$WORK/commands.txt")
\`\`\`
EOF
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "done: $OUT"
