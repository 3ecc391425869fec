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
	-p streamer-init -p storaged -p deployd -p streamerctl

# The same four binaries image/ puts into the initramfs: PID 1 at /init, the rest in /usr/bin.
define STREAMER_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/streamer-init \
		$(TARGET_DIR)/init
	$(foreach b,storaged deployd streamerctl,\
		$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/$(b) \
			$(TARGET_DIR)/usr/bin/$(b)$(sep))
endef

$(eval $(cargo-package))
