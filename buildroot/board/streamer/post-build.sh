#!/bin/sh
# Buildroot post-build: the appliance's root is the initramfs; PID 1 is /init
# (streamer-init, installed by package/streamer). Adds the mount points init expects.
set -eu
TARGET_DIR=$1
for d in proc sys dev run tmp data config; do
    mkdir -p "$TARGET_DIR/$d"
done
