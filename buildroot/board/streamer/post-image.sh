#!/bin/sh
# Buildroot post-image: UKI (systemd-boot's EFI stub + kernel + initramfs + command line), then
# the GPT disk described in genimage.cfg — the same layout as image/src/layout.rs (a test in
# image/tests/buildroot.rs checks it). Arguments: $1 = BINARIES_DIR.
set -eu
BINARIES_DIR=$1
BOARD_DIR=$(dirname "$0")
STUB=${STREAMER_EFI_STUB:-$HOST_DIR/lib/systemd/boot/efi/linuxx64.efi.stub}
CMDLINE="console=tty0 console=ttyS0,115200 quiet panic=10 cryptomgr.notests initcall_blacklist=crypto_kdf108_init"  # = image/src/lib.rs DEFAULT_CMDLINE

printf '%s' "$CMDLINE" >"$BINARIES_DIR/cmdline.txt"
printf 'NAME=Streamer\nID=streamer\nVERSION_ID=0.1.0\n' >"$BINARIES_DIR/os-release"
# Section addresses as ukify places them, above the stub's own image.
objcopy \
    --add-section .osrel="$BINARIES_DIR/os-release" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$BINARIES_DIR/cmdline.txt" --change-section-vma .cmdline=0x30000 \
    --add-section .initrd="$BINARIES_DIR/rootfs.cpio.gz" --change-section-vma .initrd=0x3000000 \
    --add-section .linux="$BINARIES_DIR/bzImage" --change-section-vma .linux=0x2000000 \
    "$STUB" "$BINARIES_DIR/streamer.efi"

rm -rf "$BINARIES_DIR/esp" "$BINARIES_DIR/config"
mkdir -p "$BINARIES_DIR/esp/EFI/BOOT" "$BINARIES_DIR/esp/EFI/streamer" "$BINARIES_DIR/config"
cp "$BINARIES_DIR/streamer.efi" "$BINARIES_DIR/esp/EFI/BOOT/BOOTX64.EFI"
cp "$BINARIES_DIR/streamer.efi" "$BINARIES_DIR/esp/EFI/streamer/B.efi"
printf '# Streamer appliance configuration\n' >"$BINARIES_DIR/config/streamer.conf"

GENIMAGE_TMP=$BUILD_DIR/genimage.tmp
rm -rf "$GENIMAGE_TMP"
genimage --rootpath "$TARGET_DIR" --tmppath "$GENIMAGE_TMP" \
    --inputpath "$BINARIES_DIR" --outputpath "$BINARIES_DIR" \
    --config "$BOARD_DIR/genimage.cfg"
