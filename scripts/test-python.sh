#!/usr/bin/env bash
# Runs tests/python (pytest) against the daemons in $CARGO_TARGET_DIR/debug. The virtualenv
# with the pinned HPE SDK is cached in $CARGO_TARGET_DIR/pyenv and rebuilt when the pins change.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
venv=$target/pyenv
requirements=tests/python/requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.installed" 2>/dev/null; then
    echo "test-python: creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.installed"
fi

export STREAMER_BIN_DIR=${STREAMER_BIN_DIR:-$target/debug}
run=("$venv/bin/python" -m pytest -p no:cacheprovider -rs -v tests/python "$@")
status=0
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
    # The tests talk over loopback only. As root they run in a network namespace of their own:
    # Chromium aborts requests in flight (net::ERR_NETWORK_CHANGED) whenever the host's
    # interfaces change under it, as they do when the QEMU tests' namespaces and tap devices
    # go away, which says nothing about the console.
    unshare --net sh -c 'ip link set lo up && exec "$@"' test-python "${run[@]}" || status=$?
else
    "${run[@]}" || status=$?
fi
# pytest exits 5 when it collected no tests: that must fail the build, not pass it.
if [ "$status" -eq 5 ]; then
    echo "test-python: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
