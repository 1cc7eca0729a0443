#!/bin/sh
# Post-build script of every gateway board.
#   $1: the target directory, $2: the board directory name under board/
#   (BR2_ROOTFS_POST_SCRIPT_ARGS).
# Makes /data the mount point of the data partition and stamps the image
# with the board it was built for.
set -eu

TARGET_DIR=$1
BOARD=$2

mkdir -p "$TARGET_DIR/data"
rm -f "$TARGET_DIR/data/.keep"
echo "$BOARD" >"$TARGET_DIR/etc/gateway-board"
