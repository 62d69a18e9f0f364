for d in usr usr/local usr/local/sbin etc etc/apt etc/apt/apt.conf.d \
	etc/apt/sources.list.d etc/apt/pi-image-mirrors var var/lib var/lib/apt var/lib/apt/lists; do
	if [ -L "${ROOTFS_DIR}/$d" ]; then
		echo "pi-image-apt-mirrors: /$d is a symlink in the image; refusing to write through it" >&2
		exit 1
	fi
done
