#!/usr/bin/env bash
# Benchmark: `pi-image release` uploading a 1 GiB asset to a loopback GitHub-shaped
# server, against `curl -X POST -T file` (streaming) to the same server in the same run.
# Targets (issue #7): peak RSS under 64 MiB; throughput at least 80 % of curl's.
#
#   benches/release.sh
#   BENCH_SIZE_MIB=256 benches/release.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${BENCH_SIZE_MIB:-1024}
bin=${PI_IMAGE_BIN:-$root/target/release/pi-image}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for tool in curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done
if [[ -z ${PI_IMAGE_BIN:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
fi

# The server: just enough of GitHub's release API; uploads are read in 1 MiB chunks.
cat >"$work/server.py" <<'PY'
import hashlib, json, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
state = {"releases": [], "next": 100}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        # Headers and body are separate writes: without NODELAY every small answer
        # waits out the client's delayed ACK (40 ms), which would dominate the run.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a): pass
    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def body(self):
        n = int(self.headers.get("content-length", 0)); h = hashlib.sha256(); left = n
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk: break
            h.update(chunk); left -= len(chunk)
        return n, h.hexdigest()
    def rel(self, r):
        return {"id": r["id"], "tag_name": r["tag"], "name": r["tag"], "body": "", "draft": r["draft"], "prerelease": False,
                "html_url": "https://github.com/o/r/releases/tag/" + r["tag"], "upload_url": "", "assets": r["assets"]}
    def do_GET(self):
        if "/releases/tags/" in self.path: return self.send(404, {"message": "Not Found"})
        if self.path.endswith("/assets"): return self.send(200, state["releases"][-1]["assets"] if state["releases"] else [])
        return self.send(200, [self.rel(r) for r in state["releases"]])
    def do_POST(self):
        n, digest = self.body()
        if "/assets?" in self.path:
            state["next"] += 1
            a = {"id": state["next"], "name": self.path.split("name=")[1].split("&")[0], "state": "uploaded", "size": n, "digest": "sha256:" + digest}
            if state["releases"]: state["releases"][-1]["assets"].append(a)
            return self.send(201, a)
        if self.path.endswith("/releases"):
            state["next"] += 1
            r = {"id": state["next"], "tag": "v1", "draft": True, "assets": []}; state["releases"].append(r)
            return self.send(201, self.rel(r))
        return self.send(201, {"id": 1, "name": "x", "state": "uploaded", "size": n})
    def do_PATCH(self):
        self.body(); r = state["releases"][-1]; r["draft"] = False; return self.send(200, self.rel(r))
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
python3 "$work/server.py" >"$work/port" &
server=$!
for _ in $(seq 50); do [[ -s $work/port ]] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"

echo "bench: writing a ${size_mib} MiB asset"
head -c "$((size_mib << 20))" /dev/urandom >"$work/big.bin"
python3 - "$work" <<'PY'
import hashlib, json, sys, os
d = sys.argv[1]
open(os.path.join(d, "sk.img.xz.sha256"), "w").write("00  sk.img.xz\n")
data = open(os.path.join(d, "sk.img.xz.sha256"), "rb").read()
m = {"schema_version": 1, "generated_at": "2026-11-26T00:00:00Z",
     "release": {"channel": "stable", "tag": "v1", "name": "bench", "prerelease": False, "make_latest": True},
     "source": {"repository": "o/r", "server_url": "https://github.com", "ref": None, "commit": None, "workflow": None, "run_id": None, "run_attempt": None},
     "build": None, "options": {}, "smoke": None, "verifier": {"status": "not_run"},
     "artifacts": [{"name": "sk.img.xz.sha256", "kind": "checksum", "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}
json.dump(m, open(os.path.join(d, "sk.img.xz.manifest.json"), "w"))
open(os.path.join(d, "RELEASE_NOTES.md"), "w").write("bench\n")
PY
cat "$work/big.bin" >/dev/null  # warm the page cache for both

start=$(date +%s.%N)
# `curl --data-binary @file` loads the file into memory and fails at 1 GiB ("option
# --data-binary: out of memory" with curl 7.88), so the reference streams it with -T.
curl -sS -o /dev/null -X POST -T "$work/big.bin" -H "Content-Type: application/octet-stream" \
  "$base/repos/o/r/releases/1/assets?name=curl.bin"
end=$(date +%s.%N)
curl_s=$(python3 -c "print($end - $start)")

(cd "$work" && /usr/bin/time -f '%e %M' -o "$work/ours.time" "$bin" -q release --img-name sk --publish --allow-unsmoked \
  --assets big.bin --repository o/r --api-url "$base" --upload-url "$base" --token bench-token >/dev/null)
read -r ours_s ours_kb <"$work/ours.time"

python3 - "$size_mib" "$curl_s" "$ours_s" "$ours_kb" <<'PY'
import sys
mib, curl_s, ours_s, kb = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rss = kb / 1024
print(f"\n{mib} MiB asset to a loopback server\n")
print("| measure | pi-image release | curl -X POST -T | ratio | target |")
print("| --- | --- | --- | --- | --- |")
print(f"| wall time (pi-image: the whole command: look-ups, create, upload, publish) | {ours_s:.2f} s | {curl_s:.2f} s | {curl_s / ours_s * 100:.0f} % of curl's throughput | >= 80 % |")
print(f"| throughput | {mib / ours_s:.0f} MiB/s | {mib / curl_s:.0f} MiB/s | | |")
print(f"| peak RSS | {rss:.0f} MiB |  | | < 64 MiB: {'met' if rss < 64 else 'NOT met'} |")
PY
