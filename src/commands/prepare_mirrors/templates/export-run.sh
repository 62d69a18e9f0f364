#!/bin/bash -e
# @MARKER@. Runs after pi-gen's last apt call of the export
# (01-run.sh): points the image's sources back at the upstream archives and removes
# the build-time mirror hook, so the shipped image has standard sources. It runs the
# checkout's copy of the hook, never the one in the image, on the build host.
@NO_SYMLINKED_DIRS@
sh "${BASE_DIR}/stage0/@SUBSTAGE@/files/pi-image-apt-mirrors" --root "${ROOTFS_DIR}" remove
