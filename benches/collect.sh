#!/usr/bin/env bash
# Benchmark: `pi-image collect-artifacts` on a zipped Pi-like image versus the
# reference pipeline `unzip -p x.zip | xz -T0 -6 | tee out.xz | sha256sum`, measured
# in the same run on the same input. Not a test: it prints ratios and checks targets.
#
#   benches/collect.sh                 # 1 GiB image (half real binaries, half zeros)
#   BENCH_SIZE_MIB=256 benches/collect.sh
#
# Targets (issue #2): wall time <= 1.0x the reference, output size within 0.5 %,
# peak RSS <= 300 MiB, zero temporary raw-image bytes written to disk.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${BENCH_SIZE_MIB:-1024}
work=${BENCH_DIR:-$root/target/bench-collect}
bin=${PI_IMAGE_BIN:-$root/target/release/pi-image}

for tool in zip unzip xz sha256sum /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install zip unzip xz-utils time)" >&2; exit 2; }
done
if [[ -z ${PI_IMAGE_BIN:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
fi

rm -rf "$work" && mkdir -p "$work/deploy"
img=$work/2026-01-01-bench-lite.img
zip_path=$work/deploy/image_2026-01-01-bench-lite.zip

echo "bench: building a ${size_mib} MiB Pi-like image (8 MiB of real files, then 8 MiB of zeros, repeated)"
python3 - "$img" "$size_mib" <<'PY'
import os, sys
out, size_mib = sys.argv[1], int(sys.argv[2])
chunk = 8 << 20
need = size_mib << 19  # half of the image is real data
files = []
for top in ("/usr/lib", "/usr/bin", "/usr/libexec", "/usr/share"):
    for d, _, names in os.walk(top):
        files += [os.path.join(d, n) for n in sorted(names)]
data = bytearray()
for f in files:
    if len(data) >= need:
        break
    try:
        if os.path.isfile(f) and not os.path.islink(f):
            with open(f, "rb") as fh:
                data += fh.read(need - len(data))
    except OSError:
        pass
with open(out, "wb") as fh:
    zeros = bytes(chunk)
    for i in range(0, need, chunk):
        fh.write(data[i:i + chunk])
        fh.write(zeros)
PY
(cd "$work" && zip -q -j "$zip_path" "$img")
raw_sha=$(sha256sum "$img" | cut -d' ' -f1)
raw_size=$(stat -c %s "$img")
rm -f "$img"
cat "$zip_path" >/dev/null  # warm the page cache for both contenders

# Runs a command under /usr/bin/time, sampling /proc/PID/io so the bytes it wrote are known.
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" &
  local pid=$! wchar=0 line
  sleep 0.2
  local child
  child=$(pgrep -P "$pid" | head -1 || true)
  while kill -0 "$pid" 2>/dev/null; do
    if [[ -n $child && -r /proc/$child/io ]]; then
      line=$(awk '/^wchar/{print $2}' "/proc/$child/io" 2>/dev/null || true)
      [[ -n $line ]] && wchar=$line
    fi
    sleep 0.5
  done
  wait "$pid"
  echo "$wchar" >"$work/$name.wchar"
}

echo "bench: reference: unzip -p | xz -T0 -6 | tee | sha256sum"
measure reference bash -c "unzip -p '$zip_path' | xz -T0 -6 | tee '$work/reference.img.xz' | sha256sum >'$work/reference.sha'"
echo "bench: pi-image collect-artifacts"
measure pi-image "$bin" --quiet collect-artifacts --deploy-dir "$work/deploy" --output-dir "$work/out" --img-name bench

read -r ref_wall ref_rss_kb <"$work/reference.time"
read -r our_wall our_rss_kb <"$work/pi-image.time"
ref_size=$(stat -c %s "$work/reference.img.xz")
our_size=$(stat -c %s "$work/out/bench.img.xz")
our_wchar=$(cat "$work/pi-image.wchar")

# Correctness of what was measured.
xz -t "$work/out/bench.img.xz"
(cd "$work/out" && sha256sum -c --quiet bench.img.xz.sha256)
test "$(xz -dc "$work/out/bench.img.xz" | sha256sum | cut -d' ' -f1)" = "$raw_sha"
grep -q "\"raw_sha256\": \"$raw_sha\"" "$work/out/bench.img.xz.metadata.json"

python3 - "$ref_wall" "$our_wall" "$ref_size" "$our_size" "$our_rss_kb" "$ref_rss_kb" "$our_wchar" "$raw_size" "$(nproc)" <<'PY'
import sys
ref_wall, our_wall = float(sys.argv[1]), float(sys.argv[2])
ref_size, our_size = int(sys.argv[3]), int(sys.argv[4])
our_rss, ref_rss = int(sys.argv[5]) / 1024, int(sys.argv[6]) / 1024
wchar, raw, cores = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
tmp_bytes = max(0, wchar - our_size - (1 << 20))  # written beyond the output (+1 MiB of logs/metadata)
rows = [
    ("wall time", f"{our_wall:.1f} s", f"{ref_wall:.1f} s", f"{our_wall / ref_wall:.3f}x", "<= 1.0x", our_wall <= ref_wall),
    ("output size", f"{our_size / 2**20:.1f} MiB", f"{ref_size / 2**20:.1f} MiB", f"{(our_size - ref_size) / ref_size * 100:+.2f} %", "within 0.5 %", abs(our_size - ref_size) <= ref_size * 0.005),
    ("peak RSS", f"{our_rss:.0f} MiB", f"{ref_rss:.0f} MiB (largest process)", "", "<= 300 MiB", our_rss <= 300),
    ("bytes written beyond the output", f"{tmp_bytes} B", "", "", "0 (no raw image on disk)", tmp_bytes == 0),
]
print(f"\n{raw / 2**20:.0f} MiB raw image, zipped; {cores} cores\n")
print("| measure | pi-image | reference | ratio | target | met |")
print("| --- | --- | --- | --- | --- | --- |")
for name, ours, ref, ratio, target, ok in rows:
    print(f"| {name} | {ours} | {ref} | {ratio} | {target} | {'yes' if ok else 'NO'} |")
PY
