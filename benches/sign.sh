#!/usr/bin/env bash
# Benchmark: `pi-image sign` of a 1 GiB file against the loopback Sigstore stack
# (tests/fixtures/sigstore: @sigstore/mock Fulcio + Rekor on 127.0.0.1), against the
# reference measured in the same run: `sha256sum` on the same file plus the service
# round trips (pi-image signing a 1-byte file: token, Fulcio, Rekor, self-check).
# Targets (issue #6): peak RSS under 64 MiB; wall time within 1.2x of the reference.
#
#   benches/sign.sh
#   BENCH_SIZE_MIB=256 benches/sign.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${BENCH_SIZE_MIB:-1024}
bin=${PI_IMAGE_BIN:-$root/target/release/pi-image}
work=$(mktemp -d)
stack=
trap 'exec 3>&- 2>/dev/null || true; [[ -n $stack ]] && kill "$stack" 2>/dev/null; rm -rf "$work"' EXIT
for tool in node curl sha256sum python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done
[[ -d $root/tests/fixtures/sigstore/node_modules/@sigstore/mock ]] \
  || (cd "$root/tests/fixtures/sigstore" && npm ci --no-audit --no-fund --loglevel=error)
if [[ -z ${PI_IMAGE_BIN:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
fi

# The stack stops when its stdin (fd 3 here) closes.
mkfifo "$work/stdin"
node "$root/tests/fixtures/sigstore/stack.js" "$work/stack" <"$work/stdin" >"$work/ready" &
stack=$!
exec 3>"$work/stdin"
for _ in $(seq 100); do [[ -s $work/ready ]] && break; sleep 0.1; done
read -r token_url request_token < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["token_url"], r["request_token"])' "$work/ready")
jwt=$(curl -sf -H "Authorization: bearer $request_token" "$token_url&audience=sigstore" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')

echo "bench: writing a ${size_mib} MiB file"
head -c "$((size_mib << 20))" /dev/urandom >"$work/big.bin"
printf x >"$work/tiny.bin"
cat "$work/big.bin" >/dev/null  # warm the page cache for both

sign() {  # sign FILE TIMEFILE
  (cd "$work" && SIGSTORE_ID_TOKEN=$jwt /usr/bin/time -f '%e %M' -o "$2" \
    "$bin" -q sign "$1" --trust-config "$work/stack/trust_config.json" >/dev/null)
}

/usr/bin/time -f '%e %M' -o "$work/sha.time" sha256sum "$work/big.bin" >/dev/null
read -r sha_s sha_kb <"$work/sha.time"
sign tiny.bin "$work/tiny.time"
read -r tiny_s _ <"$work/tiny.time"
sign big.bin "$work/big.time"
read -r ours_s ours_kb <"$work/big.time"
# The bundle must verify (a fast wrong answer is not a result).
"$bin" -q verify "$work/big.bin" --trust-config "$work/stack/trust_config.json" \
  --repository sugarkube/pi-image-test

python3 - "$size_mib" "$sha_s" "$tiny_s" "$ours_s" "$ours_kb" "$sha_kb" <<'PY'
import sys
mib, sha_s, tiny_s, ours_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rss, sha_rss = int(sys.argv[5]) / 1024, int(sys.argv[6]) / 1024
ref = sha_s + tiny_s
print(f"\n{mib} MiB file, loopback Sigstore stack\n")
print("| measure | pi-image sign | reference | ratio | target |")
print("| --- | --- | --- | --- | --- |")
print(f"| wall time | {ours_s:.2f} s | {ref:.2f} s (sha256sum {sha_s:.2f} s + round trips {tiny_s:.2f} s) | **{ours_s / ref:.2f}x** | <= 1.2x: {'met' if ours_s <= 1.2 * ref else 'NOT met'} |")
print(f"| peak RSS | {rss:.1f} MiB | sha256sum {sha_rss:.1f} MiB | | < 64 MiB: {'met' if rss < 64 else 'NOT met'} |")
PY
