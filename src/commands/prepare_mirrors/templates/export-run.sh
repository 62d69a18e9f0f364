#!/bin/bash -e
# @MARKER@. Runs after pi-gen's last apt call of the export
# (01-run.sh): points the image's sources back at the upstream archives and removes
# the build-time mirror hook, so the shipped image has standard sources. It runs the
# checkout's copy of the hook, never the one in the image, on the build host.
for d in usr usr/local usr/local/sbin etc etc/apt etc/apt/apt.conf.d \
	etc/apt/sources.list.d etc/apt/pi-image-mirrors var var/lib var/lib/apt var/lib/apt/lists; do
	if [ -L "${ROOTFS_DIR}/$d" ]; then
		echo "pi-image-apt-mirrors: /$d is a symlink in the image; refusing to write through it" >&2
		exit 1
	fi
done
sh "${BASE_DIR}/stage0/@SUBSTAGE@/files/pi-image-apt-mirrors" --root "${ROOTFS_DIR}" remove
