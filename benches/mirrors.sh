#!/usr/bin/env bash
# Benchmark: what the prepare-mirrors hook adds to apt. `apt-get update` against a loopback
# mirror through the generated configuration (hook in APT::Update::Pre-Invoke, sources on
# the mirror list) versus plain `apt-get update` with a plain source line to the same
# mirror, in the same run; then the same with the first candidate down (503), where the
# reference is the plain source pointing at the healthy mirror directly.
#
#   benches/mirrors.sh            (needs root: apt-get update writes its lists as root)
#   BENCH_RUNS=20 benches/mirrors.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-10}
bin=${PI_IMAGE_BIN:-$root/target/release/pi-image}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
for tool in apt-get apt-ftparchive dpkg-deb gpg python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done
[[ $(id -u) -eq 0 ]] || { echo "bench: run as root (apt-get update)" >&2; exit 2; }
if [[ -z ${PI_IMAGE_BIN:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
fi

# A signed one-package repository, served as /raspbian by a healthy and a 503 server.
suite=bookworm
repo=$work/www/raspbian
mkdir -p "$work/pkg/DEBIAN" "$repo/pool/main" "$repo/dists/$suite/main/binary-amd64" "$work/gnupg"
chmod 700 "$work/gnupg"
printf 'Package: bench\nVersion: 1\nArchitecture: all\nMaintainer: b <b@example.org>\nDescription: b\n' >"$work/pkg/DEBIAN/control"
dpkg-deb --root-owner-group --build "$work/pkg" "$repo/pool/main/bench_1_all.deb" >/dev/null
(cd "$repo" && apt-ftparchive packages pool >"dists/$suite/main/binary-amd64/Packages")
(cd "$repo/dists/$suite" && apt-ftparchive -o "APT::FTPArchive::Release::Suite=$suite" \
  -o APT::FTPArchive::Release::Architectures=amd64 -o APT::FTPArchive::Release::Components=main \
  release . >Release)
export GNUPGHOME=$work/gnupg
gpg --batch --passphrase '' --quick-gen-key 'bench <b@example.org>' ed25519 sign never 2>/dev/null
gpg --batch --yes --clearsign -o "$repo/dists/$suite/InRelease" "$repo/dists/$suite/Release"
gpg --batch --export >"$work/key.gpg"
gpgconf --kill gpg-agent

cat >"$work/server.py" <<'PY'
import functools, http.server, sys
class Down(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(503); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
class Up(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
handler = Down if sys.argv[2] == "down" else functools.partial(Up, directory=sys.argv[3])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
PY
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(port); down_port=$(port)
python3 "$work/server.py" "$up_port" up "$work/www" & pids+=($!)
python3 "$work/server.py" "$down_port" down & pids+=($!)
up=http://127.0.0.1:$up_port/raspbian
down=http://127.0.0.1:$down_port/raspbian
sleep 0.5

# A pi-gen-shaped checkout for prepare-mirrors.
pg=$work/pi-gen
mkdir -p "$pg/stage0/00-configure-apt/files" "$pg/stage2" "$pg/export-image/02-set-sources"
printf '#!/bin/bash\n' >"$pg/build.sh"
printf 'deb http://raspbian.raspberrypi.com/raspbian/ RELEASE main\n' >"$pg/stage0/00-configure-apt/files/sources.list"

# An apt root: Dir in APT_CONFIG, the repository key trusted.
aptroot() { # DIR
  mkdir -p "$1"/etc/apt/{sources.list.d,apt.conf.d,preferences.d,trusted.gpg.d} \
    "$1"/var/lib/apt/lists/partial "$1"/var/cache/apt/archives/partial "$1"/var/lib/dpkg
  : >"$1/var/lib/dpkg/status"
  cp "$work/key.gpg" "$1/etc/apt/trusted.gpg.d/bench.gpg"
  printf 'Dir "%s/";\nDir::State::status "%s/var/lib/dpkg/status";\nAPT::Architecture "amd64";\nAPT::Architectures { "amd64"; };\nAPT::Sandbox::User "root";\nAcquire::Languages "none";\nAcquire::Retries "0";\n' \
    "$1" "$1" >"$1/apt.conf"
}
# The generated configuration installed into an apt root, as a stage step does.
install_hook() { # DIR
  local f=$pg/stage0/00-00-pi-image-mirrors/files
  aptroot "$1"
  cp "$f/pi-image-apt-mirrors" "$1/hook"
  cp "$f/pi-image-mirrors.conf" "$1/etc/apt/"
  cp "$f/pi-image-mirrors.state" "$1/var/lib/apt/"
  sed "s#/usr/local/sbin/pi-image-apt-mirrors#$1/hook#g" "$f/apt.conf.d/10pi-image-mirrors" >"$1/etc/apt/apt.conf.d/10pi-image-mirrors"
  sed "s/RELEASE/$suite/" "$pg/stage0/00-configure-apt/files/sources.list" >"$1/etc/apt/sources.list"
  APT_CONFIG=$1/apt.conf "$1/hook" rewrite 2>/dev/null
}
# Median wall time of N `apt-get update` runs from empty lists, in ms (only the hook's own
# and apt's work: the binary is not timed).
time_updates() { # DIR
  local t=()
  for _ in $(seq "$runs"); do
    rm -rf "$1"/var/lib/apt/lists/*_*
    # The rotation case starts each run from the failing mirror again (not timed).
    if [[ -f $1/state.orig ]]; then
      cp "$1/state.orig" "$1/var/lib/apt/pi-image-mirrors.state"
      APT_CONFIG=$1/apt.conf "$1/hook" rewrite 2>/dev/null
    fi
    local s e
    s=$(date +%s%N)
    APT_CONFIG=$1/apt.conf apt-get update -qq >/dev/null 2>"$1/err" || { cat "$1/err" >&2; exit 1; }
    e=$(date +%s%N)
    t+=($(((e - s) / 1000000)))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

report() { # LABEL OURS REF
  awk -v l="$1" -v o="$2" -v r="$3" 'BEGIN { printf "%-28s %5d ms   reference %5d ms   ratio %.2f   (+%d ms per apt-get update)\n", l, o, r, o / r, o - r }'
}

echo "apt-get update, median of $runs runs, loopback mirror"
# 1. Healthy mirror: the hook's probe and rewrite versus nothing.
(cd "$work" && APT_REWRITE_MIRRORS="$up $down" "$bin" -q prepare-mirrors --pi-gen-dir "$pg" --pi-gen-branch "$suite" --probe-retries 0 >/dev/null 2>&1)
install_hook "$work/ours"
aptroot "$work/ref"
echo "deb $up $suite main" >"$work/ref/etc/apt/sources.list"
report "healthy first candidate" "$(time_updates "$work/ours")" "$(time_updates "$work/ref")"
# 2. The active mirror is down (chosen while it still answered): rotation in the hook.
(cd "$work" && APT_REWRITE_MIRRORS="$down $up" "$bin" -q prepare-mirrors --pi-gen-dir "$pg" --pi-gen-branch "$suite" --offline >/dev/null 2>&1)
install_hook "$work/ours-down"
cp "$work/ours-down/var/lib/apt/pi-image-mirrors.state" "$work/ours-down/state.orig"
report "first candidate down (503)" "$(time_updates "$work/ours-down")" "$(time_updates "$work/ref")"
