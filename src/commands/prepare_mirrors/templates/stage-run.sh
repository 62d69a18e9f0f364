#!/bin/bash -e
# @MARKER@. Runs on the build host before this stage's first
# apt call: installs the apt mirror hook into the stage's root filesystem, then points
# its sources at a healthy mirror (rotating when the chosen one stopped answering).
# The checkout's own copy of the hook does the work here: what is in the image may
# have been replaced by a package or an overlay, and this runs on the build host.
@NO_SYMLINKED_DIRS@
install -d "${ROOTFS_DIR}/usr/local/sbin" "${ROOTFS_DIR}/etc/apt/apt.conf.d" "${ROOTFS_DIR}/var/lib/apt"
rm -f "${ROOTFS_DIR}/usr/local/sbin/pi-image-apt-mirrors" "${ROOTFS_DIR}/etc/apt/pi-image-mirrors.conf" \
	"${ROOTFS_DIR}/var/lib/apt/pi-image-mirrors.state" "${ROOTFS_DIR}/etc/apt/apt.conf.d/10pi-image-mirrors" \
	"${ROOTFS_DIR}/etc/apt/apt.conf.d/80pi-image-apt"
install -m 755 files/pi-image-apt-mirrors "${ROOTFS_DIR}/usr/local/sbin/pi-image-apt-mirrors"
install -m 644 files/pi-image-mirrors.conf "${ROOTFS_DIR}/etc/apt/pi-image-mirrors.conf"
install -m 644 files/pi-image-mirrors.state "${ROOTFS_DIR}/var/lib/apt/pi-image-mirrors.state"
install -m 644 files/apt.conf.d/10pi-image-mirrors "${ROOTFS_DIR}/etc/apt/apt.conf.d/10pi-image-mirrors"
install -m 644 files/apt.conf.d/80pi-image-apt "${ROOTFS_DIR}/etc/apt/apt.conf.d/80pi-image-apt"
@PROXY_LINE@
sh files/pi-image-apt-mirrors --root "${ROOTFS_DIR}" update
