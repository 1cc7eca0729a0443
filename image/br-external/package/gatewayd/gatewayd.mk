################################################################################
#
# gatewayd
#
################################################################################

# The Cargo workspace of this repository, fetched with the git method so that
# Buildroot's cargo download post-process vendors every crate of Cargo.lock
# into the source tarball (dl/gatewayd/). Only "make gatewayd-source" needs
# the network; the build itself runs "cargo build --offline --locked".
GATEWAYD_VERSION = $(call qstrip,$(BR2_PACKAGE_GATEWAYD_VERSION))
GATEWAYD_SITE = $(call qstrip,$(BR2_PACKAGE_GATEWAYD_SITE))
GATEWAYD_SITE_METHOD = git
GATEWAYD_LICENSE = Apache-2.0
# A workspace: build and install the daemon's crate (one binary); Cargo.lock and
# the vendored crates are found at the workspace root.
GATEWAYD_SUBDIR = firmware/gatewayd

GATEWAYD_BOARD = $(call qstrip,$(BR2_PACKAGE_GATEWAYD_BOARD))

# The PCM highway of a board with real line chips goes through ALSA.
GATEWAYD_DEPENDENCIES = alsa-lib host-pkgconf
GATEWAYD_CARGO_BUILD_OPTS = --features alsa

define GATEWAYD_INSTALL_BOARDS
	for f in $(@D)/board/*/board.toml; do \
		b=$$(basename $$(dirname $$f)); \
		$(INSTALL) -D -m 0644 $$f \
			$(TARGET_DIR)/usr/share/gatewayd/boards/$$b/board.toml || exit 1; \
	done
	$(INSTALL) -D -m 0644 $(@D)/board/$(GATEWAYD_BOARD)/board.toml \
		$(TARGET_DIR)/etc/gatewayd/board.toml
endef
GATEWAYD_POST_INSTALL_TARGET_HOOKS += GATEWAYD_INSTALL_BOARDS

$(eval $(cargo-package))
