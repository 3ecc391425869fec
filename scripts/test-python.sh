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
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -rs -v tests/python "$@" || status=$?
# pytest exits 5 when it collected no tests: that must fail the build, not pass it.
if [ "$status" -eq 5 ]; then
    echo "test-python: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
