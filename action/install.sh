#!/usr/bin/env bash
# Makes the pi-image binary of this action's own source available, for every action.yml.
#
# What "this action's binary" is depends on the ref the workflow used:
#   - A release of the action carries action/release-digests.txt, committed by the release
#     workflow: the SHA-256 of each released archive. The archive for this runner is
#     downloaded from the release and must match the committed digest (no pre-installed
#     pi-image, no digest list from the same server: the action's tree is the anchor).
#   - Any other ref (a branch, a commit, a semver tag before its digests commit) has no
#     digests: its own source is built with cargo, once per job (kept in RUNNER_TEMP under a
#     digest of that source), not once per step.
# A `pi-image` on PATH is used first when it is this action's binary: for a release, the
# released binary itself (same SHA-256); otherwise one whose --version is this version.
# Later steps of a job reuse the first step's install this way (its directory is added to
# GITHUB_PATH), and local `act` runs use a development build. (Code that ran earlier in
# the same job could change anything, this script included: that is out of its reach.)
#
# Modes (input `install`): auto, as above; source, always build.
# Writes `bin` and `source` (path, cache, download or cargo) to GITHUB_OUTPUT.
set -euo pipefail

# Messages carry values (an input, paths): an annotation's message is escaped as
# actions/toolkit does, so no value can end it or start a line of its own.
esc() {
  local s=${1//'%'/%25}
  s=${s//$'\r'/%0D}
  s=${s//$'\n'/%0A}
  printf '%s' "${s//'##['/##%5B}"
}
bail() {
  printf '::error::pi-image install: %s\n' "$(esc "$*")"
  exit 1
}
# A bad input is a usage error: exit 2, as the binary's.
bad_input() {
  printf '::error::pi-image install: %s\n' "$(esc "$*")"
  exit 2
}
info() { printf 'pi-image install: %s\n' "$(esc "$*")"; }

# The action's root: this script is <root>/action/install.sh, whichever action.yml (the
# root one or a step's, one directory down) runs it.
action_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${INPUT_INSTALL:-auto}
case $mode in auto | source) ;; *) bad_input "input \`install\` must be auto or source, not \`$(printf %q "$mode")\`" ;; esac
repo=${ACTION_REPOSITORY-}
ref=${ACTION_REF-}
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$action_dir/Cargo.toml" | head -n 1)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || bail "cannot read the version from $action_dir/Cargo.toml"
want="pi-image $version"
started=$(date +%s)

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) target=x86_64-unknown-linux-gnu ;;
  Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-gnu ;;
  Darwin-x86_64) target=x86_64-apple-darwin ;;
  Darwin-arm64) target=aarch64-apple-darwin ;;
  *) target='' ;;
esac
# The Linux builds are glibc ones: a musl system (Alpine) builds the source.
if [[ $target == *-linux-gnu ]] && compgen -G '/lib/ld-musl-*' >/dev/null; then
  target=''
fi
asset=pi-image-v$version-$target.tar.gz
digests=$action_dir/action/release-digests.txt
digest_of() { # digest_of NAME: its SHA-256 in release-digests.txt, or nothing
  awk -v a="$1" '$2 == a && length($1) == 64 && $1 ~ /^[0-9a-f]+$/ { print $1; exit }' "$digests"
}
released='' released_bin=''
if [[ -n $target && -f $digests ]]; then
  released=$(digest_of "$asset")
  released_bin=$(digest_of "pi-image-v$version-$target/pi-image")
  [[ -z $released || -n $released_bin ]] ||
    bail "action/release-digests.txt lists $asset but not the binary inside it"
fi

output() { # output KEY VALUE
  [[ -n ${GITHUB_OUTPUT-} ]] && printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
  return 0
}
publish() { # publish PATH SOURCE
  output bin "$1"
  output source "$2"
  # A binary found on PATH stays where PATH has it (re-adding /usr/bin would put it
  # before what setup-* steps added).
  [[ $2 != path && -n ${GITHUB_PATH-} ]] && dirname "$1" >>"$GITHUB_PATH"
  info "using $want from $1 ($2, $(($(date +%s) - started)) s)"
  exit 0
}

# 1. Already on PATH. For a release, only the released binary itself (same SHA-256): a
# development build of the same version is another binary. Otherwise (a branch or commit,
# local act runs) the version must match.
if [[ $mode == auto ]] && found=$(command -v pi-image 2>/dev/null); then
  if [[ -n $released ]]; then
    [[ $(sha256_of "$found") == "$released_bin" ]] && publish "$found" path
    info "ignoring $found: it is not the binary of release $version"
  else
    have=$("$found" --version 2>/dev/null || true)
    [[ $have == "$want" ]] && publish "$found" path
    info "ignoring $found: it is \`${have:-unknown}\`, this action needs \`$want\`"
  fi
fi

# 2. The release binary, checked against the digests committed in the action's tree: the
# archive when it is downloaded, the binary itself every time the tool cache serves it
# (a self-hosted runner's tool cache outlives jobs and is shared by them).
if [[ $mode == auto && -n $released ]]; then
  dir=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}/pi-image/$version/$target
  if [[ -f $dir/bin/pi-image && ! -L $dir/bin/pi-image ]] && [[ $(sha256_of "$dir/bin/pi-image") == "$released_bin" ]]; then
    publish "$dir/bin/pi-image" cache
  fi
  [[ -n $repo ]] || bail "this is release $version of the action, but ACTION_REPOSITORY is not set: run it from its action.yml"
  base=${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download/v$version
  # https only, except a loopback server (the tests serve a fake release locally).
  proto='=https'
  [[ $base =~ ^http://(127\.0\.0\.1|localhost)(:[0-9]+)?/ ]] && proto='=http'
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  info "downloading $base/$asset"
  curl --proto "$proto" --tlsv1.2 -fsSL --retry 5 --retry-connrefused -o "$tmp/$asset" "$base/$asset" ||
    bail "cannot download $asset of release v$version from $base (set \`install: source\` to build the action's source instead)"
  got=$(sha256_of "$tmp/$asset")
  [[ $got == "$released" ]] ||
    bail "SHA-256 mismatch for $asset: the download is $got, action/release-digests.txt of this release says $released; nothing was installed"
  info "SHA-256 verified against action/release-digests.txt: $got"
  mkdir "$tmp/x"
  tar -xzf "$tmp/$asset" -C "$tmp/x" pi-image
  [[ -f $tmp/x/pi-image && ! -L $tmp/x/pi-image && $(sha256_of "$tmp/x/pi-image") == "$released_bin" ]] ||
    bail "$asset does not hold the binary action/release-digests.txt names; nothing was installed"
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  install -m 755 "$tmp/x/pi-image" "$dir/bin/pi-image"
  publish "$dir/bin/pi-image" download
fi

# 3. This ref's own source.
if [[ $mode == source ]]; then
  why="input \`install\` is source"
elif [[ -z $target ]]; then
  why="no release binary is built for $(uname -s) $(uname -m)"
elif [[ -f $digests ]]; then
  why="action/release-digests.txt lists no $asset"
else
  why="this ref of the action (${ref:-a local path}) is not a release: it has no action/release-digests.txt, so no downloaded binary could be checked"
fi
# The build is keyed on the source itself (and cargo's configuration), so a branch or
# commit is built once per job. It stays in this job's RUNNER_TEMP: nothing outside the
# source could vouch for a build kept where other jobs can write.
srcs=(Cargo.toml Cargo.lock src)
[[ -d $action_dir/.cargo ]] && srcs+=(.cargo)
key=$(cd "$action_dir" && find "${srcs[@]}" -type f -print0 | LC_ALL=C sort -z |
  while IFS= read -r -d '' f; do printf '%s  %s\n' "$(sha256_of "$f")" "$f"; done | {
  if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi
} | cut -c1-16)
key=src-$version-${target:-$(uname -s)-$(uname -m)}-$key
dir=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/pi-image/$key
if [[ -x $dir/bin/pi-image ]] && [[ $("$dir/bin/pi-image" --version 2>/dev/null) == "$want" ]]; then
  info "$why; a build of this source is cached"
  publish "$dir/bin/pi-image" cache
fi
command -v cargo >/dev/null ||
  bail "$why, and there is no cargo to build it: install Rust first (rustup), or use a release of the action (@v1)"
info "$why: building pi-image $version from $action_dir with cargo install --locked (several minutes)"
CARGO_TARGET_DIR=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/pi-image-target \
  cargo install --locked --quiet --path "$action_dir" --root "$dir" --force
publish "$dir/bin/pi-image" cargo
