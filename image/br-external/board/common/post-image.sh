#!/bin/sh
# Post-image script of every gateway board: lays out the disk image with
# genimage from board/<board>/genimage.cfg (two root slots and the data
# partition).
#   $1: the images directory, $2: the board directory name under board/
#   (BR2_ROOTFS_POST_SCRIPT_ARGS).
# Environment from Buildroot: BR2_EXTERNAL_GW_PATH, HOST_DIR, BUILD_DIR.
set -eu

BINARIES_DIR=$1
BOARD=$2
BOARD_DIR=$BR2_EXTERNAL_GW_PATH/board/$BOARD

case "$BOARD" in
rpi4)
	# The firmware reads config.txt, cmdline.txt and the overlay from the
	# boot partition.
	fw=$BINARIES_DIR/rpi-firmware
	mkdir -p "$fw/overlays"
	cp "$BOARD_DIR/config.txt" "$BOARD_DIR/cmdline.txt" "$fw/"
	"$HOST_DIR/bin/dtc" -@ -I dts -O dtb \
		-o "$fw/overlays/gateway-linecard.dtbo" \
		"$BOARD_DIR/gateway-linecard-overlay.dts"
	;;
qemu_aarch64_virt)
	# Direct kernel boot: the command line travels next to the Image.
	cp "$BOARD_DIR/cmdline" "$BINARIES_DIR/cmdline"
	;;
*)
	echo "post-image.sh: unknown board '$BOARD'" >&2
	exit 1
	;;
esac

GENIMAGE_TMP=$BUILD_DIR/genimage.tmp
rm -rf "$GENIMAGE_TMP"
"$HOST_DIR/bin/genimage" \
	--rootpath "$TARGET_DIR" \
	--tmppath "$GENIMAGE_TMP" \
	--inputpath "$BINARIES_DIR" \
	--outputpath "$BINARIES_DIR" \
	--config "$BOARD_DIR/genimage.cfg"
