#!/usr/bin/env bash
# Runs the appliance's daemons on this machine, in the foreground (`make dev`, `make run`):
# storaged (volumes, NBD) and deployd (HTTPS REST API). Ctrl-C (or SIGTERM) stops both; if
# either exits on its own, the other is stopped and the script exits with its status.
#
# Environment (all optional):
#   STREAMER_ADMIN_PASSWORD  Administrator's password on first start (else deployd generates
#                            one and prints it once)
#   BIN     directory of the built binaries          (default target/release)
#   STATE   state directory                          (default var/dev)
#   API     HTTPS API address                        (default 127.0.0.1:8443)
#   NBD     NBD address                              (default 127.0.0.1:10809)
set -euo pipefail

BIN=${BIN:-target/release}
STATE=${STATE:-var/dev}
API=${API:-127.0.0.1:8443}
NBD=${NBD:-127.0.0.1:10809}
SOCK=$STATE/storaged.sock

for b in storaged deployd; do
    if [ ! -x "$BIN/$b" ]; then
        echo "dev.sh: $BIN/$b is missing: run make build first" >&2
        exit 1
    fi
done
mkdir -p "$STATE/storaged" "$STATE/deployd"

storaged_pid=
deployd_pid=
stop() {
    trap - INT TERM EXIT
    # deployd first: it uses storaged.
    for pid in $deployd_pid $storaged_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

"$BIN/storaged" serve --data-dir "$STATE/storaged" --nbd-listen "$NBD" --control "$SOCK" &
storaged_pid=$!
for _ in $(seq 100); do
    [ -S "$SOCK" ] && break
    if ! kill -0 "$storaged_pid" 2>/dev/null; then
        wait "$storaged_pid" && status=0 || status=$?
        echo "dev.sh: storaged exited (status $status) before it was ready" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -S "$SOCK" ]; then
    echo "dev.sh: storaged did not create $SOCK in 10 s" >&2
    exit 1
fi

"$BIN/deployd" --state-dir "$STATE/deployd" --listen "$API" --storaged "$SOCK" --nbd "$NBD" &
deployd_pid=$!

cat >&2 <<MSG
dev.sh: storaged: NBD on $NBD, data in $STATE/storaged, control socket $SOCK
dev.sh: deployd:  https://$API (self-signed certificate in $STATE/deployd), user Administrator
dev.sh: try:      $BIN/streamerctl login --url https://$API --insecure
dev.sh: Ctrl-C stops both.
MSG

status=0
wait -n "$storaged_pid" "$deployd_pid" || status=$?
echo "dev.sh: a daemon exited (status $status); stopping the other" >&2
exit "$status"
