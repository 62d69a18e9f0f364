#!/usr/bin/env bash
# Benchmark: what the SBOM, package lock and bmap cost `pi-image collect-artifacts`, on a
# real 1 GiB disk image (MBR, FAT32 boot partition, ext4 root partition half full of this
# machine's files and holding this machine's own dpkg database), zipped as pi-gen ships it.
# The same binary runs with and without them (`--no-sbom --no-bmap`), alternately, in the
# same run. Not a test: it prints the ratio and checks the target.
#
#   benches/artifacts.sh                     # 1 GiB image, 2 rounds
#   BENCH_SIZE_MIB=512 BENCH_ROUNDS=3 benches/artifacts.sh
#
# Target (issue #16): under 10 % extra wall time; bmaptool accepts the bmap.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${BENCH_SIZE_MIB:-1024}
rounds=${BENCH_ROUNDS:-2}
work=${BENCH_DIR:-$root/target/bench-artifacts}
bin=${PI_IMAGE_BIN:-$root/target/release/pi-image}

for tool in zip mkfs.ext4 mkfs.vfat mcopy bmaptool python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install zip e2fsprogs dosfstools mtools bmap-tools)" >&2; exit 2; }
done
if [[ -z ${PI_IMAGE_BIN:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
fi

rm -rf "$work" && mkdir -p "$work/deploy" "$work/tree/var/lib/dpkg" "$work/tree/etc"
boot_mib=256 root_mib=$((size_mib - boot_mib - 4))
echo "bench: building a ${size_mib} MiB disk image (FAT32 ${boot_mib} MiB, ext4 ${root_mib} MiB)"
# The root file system: this machine's dpkg database and os-release, and its files up to
# half the partition.
cp /var/lib/dpkg/status "$work/tree/var/lib/dpkg/status"
cp -L /etc/os-release "$work/tree/etc/os-release"
python3 - "$work/tree/usr" "$((root_mib << 19))" <<'PY'
import os, shutil, sys
dest, budget = sys.argv[1], int(sys.argv[2])
used = 0
for top in ("/usr/lib", "/usr/bin", "/usr/share"):
    for d, _, names in os.walk(top):
        for n in sorted(names):
            src = os.path.join(d, n)
            if used >= budget or os.path.islink(src) or not os.path.isfile(src):
                continue
            out = os.path.join(dest, os.path.relpath(src, "/usr"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            try:
                shutil.copyfile(src, out)
                used += os.path.getsize(out)
            except OSError:
                pass
PY
mkfs.ext4 -q -F -L rootfs -d "$work/tree" "$work/root.ext4" "${root_mib}M"
mkfs.vfat -F 32 -n bootfs -C "$work/boot.vfat" $((boot_mib * 1024)) >/dev/null
for f in /bin/bash /bin/ls /usr/bin/python3; do MTOOLS_SKIP_CHECK=1 mcopy -i "$work/boot.vfat" "$(readlink -f "$f")" ::; done
img=$work/2026-01-01-bench-lite.img
truncate -s "${size_mib}M" "$img"
printf 'label: dos\nunit: sectors\nstart=8192, size=%d, type=c\nstart=%d, size=%d, type=83\n' \
  $((boot_mib * 2048)) $(((4 + boot_mib) * 2048)) $((root_mib * 2048)) | sfdisk -q "$img"
dd if="$work/boot.vfat" of="$img" bs=1M seek=4 conv=notrunc status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$((4 + boot_mib)) conv=notrunc status=none
rm -rf "$work/tree" "$work/boot.vfat" "$work/root.ext4"
(cd "$work" && zip -q -j "$work/deploy/image_2026-01-01-bench-lite.zip" "$img")
rm -f "$img"
cat "$work/deploy/image_2026-01-01-bench-lite.zip" >/dev/null

run() {  # run NAME [extra flags]: prints the wall seconds
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" --quiet collect-artifacts --deploy-dir "$work/deploy" --output-dir "$work/$name" --img-name bench "$@"
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
with=() without=()
for ((i = 1; i <= rounds; i++)); do
  echo "bench: round $i: without (--no-sbom --no-bmap), then with"
  without+=("$(run without --no-sbom --no-bmap)")
  with+=("$(run with)")
done

# What was measured is right: bmaptool takes the bmap, the SBOM lists the packages.
bmaptool copy --bmap "$work/with/bench.img.bmap" "$work/with/bench.img.xz" "$work/card.img" 2>/dev/null
rm -f "$work/card.img"
packages=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['inventory']['packages'])" "$work/with/bench.img.xz.metadata.json")

python3 - "$size_mib" "$packages" "$(nproc)" "${without[*]}" "${with[*]}" <<'PY'
import sys
size, packages, cores = sys.argv[1], sys.argv[2], sys.argv[3]
without = [float(x) for x in sys.argv[4].split()]
with_ = [float(x) for x in sys.argv[5].split()]
a, b = min(without), min(with_)
extra = (b - a) / a * 100
print(f"\n{size} MiB disk image, zipped; {packages} packages in its dpkg database; {cores} cores")
print(f"best of {len(without)} each (A B A B)\n")
print("| measure | with SBOM, lock, bmap | without | extra | target | met |")
print("| --- | --- | --- | --- | --- | --- |")
print(f"| wall time | {b:.1f} s | {a:.1f} s | {extra:+.1f} % | < 10 % | {'yes' if extra < 10 else 'NO'} |")
PY
