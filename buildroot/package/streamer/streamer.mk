################################################################################
#
# streamer: the appliance's binaries, built from this repository with cargo
#
################################################################################

STREAMER_VERSION = 0.1.0
STREAMER_SITE = $(BR2_EXTERNAL_STREAMER_PATH)/..
STREAMER_SITE_METHOD = local
STREAMER_LICENSE = Apache-2.0
STREAMER_CARGO_BUILD_OPTS = \
	-p streamer-init -p streamer-multicall
# etcd-client (clusterd, deployd) generates its gRPC code with protoc at build time.
STREAMER_DEPENDENCIES = host-protobuf
STREAMER_CARGO_ENV = PROTOC=$(HOST_DIR)/bin/protoc

# The same two binaries image/ puts into the initramfs: PID 1 at /init, and the multi-call
# /usr/bin/streamer with a link for each program it lists (storaged, deployd, streamerctl,
# clusterd).
define STREAMER_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/streamer-init \
		$(TARGET_DIR)/init
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/streamer \
		$(TARGET_DIR)/usr/bin/streamer
	$(foreach b,$(STREAMER_PROGRAMS),ln -sf streamer $(TARGET_DIR)/usr/bin/$(b)$(sep))
endef

# = `streamer --list` (multicall/src/main.rs PROGRAMS).
STREAMER_PROGRAMS = storaged deployd streamerctl clusterd

$(eval $(cargo-package))
