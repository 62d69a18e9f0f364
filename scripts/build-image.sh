#!/usr/bin/env bash
# The main job: build the default image (IMG_NAME=sugarkube, arm64, stages 0-2) end to
# end with pi-gen, boot it in QEMU and turn it into release artifacts in OUTPUT_DIR
# (default: ./dist). Arguments are passed to `pi-image pipeline`.
# On a machine that lacks pi-gen's prerequisites it says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export IMG_NAME=${IMG_NAME:-sugarkube} OUTPUT_DIR=${OUTPUT_DIR:-dist}
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
# pi-gen's `depends` file: tool[:package].
for pair in quilt parted realpath:coreutils qemu-aarch64-static:qemu-user-static debootstrap zerofree \
            zip mkdosfs:dosfstools bsdtar:libarchive-tools bc file git xxd kmod pigz arch-test rsync \
            gpg:gnupg mcopy:mtools xz:xz-utils; do
  tool=${pair%%:*} pkg=${pair#*:}
  command -v "$tool" >/dev/null || missing+=("command \`$tool\` (apt-get install $pkg)")
done
if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
  missing+=("root: pi-gen runs as root (Run as root or install sudo)")
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  missing+=("binfmt_misc registration for arm64 (apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64)")
fi
free_gb=$(df -Pk . | awk 'NR==2 {print int($4/1048576)}')
if ((free_gb < 30)); then
  missing+=("30 GB of free disk here (only ${free_gb} GB)")
fi
if ! timeout 10 bash -c 'exec 3<>/dev/tcp/archive.raspberrypi.com/80' 2>/dev/null; then
  missing+=("network access to archive.raspberrypi.com (pi-gen downloads Raspberry Pi OS packages from it)")
fi

cargo build --release --locked --quiet
bin=target/release/pi-image
# The kernel features pi-gen's export needs (loop partition scanning, vfat), judged as
# run-pi-gen judges them before it builds.
while IFS= read -r line; do
  missing+=("kernel: ${line#*run-pi-gen (export, every strategy) }")
done < <("$bin" doctor 2>&1 | grep '^MISSING .*run-pi-gen (export' || true)

if ((${#missing[@]})); then
  echo "build-image: cannot build the default image on this machine; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

# Every step in order: prepare-mirrors, run-pi-gen, collect-artifacts, smoke, manifest, and a dry run of
# the release (pass --publish and a GITHUB_TOKEN to publish). Re-running resumes.
exec "$bin" pipeline "$@"
