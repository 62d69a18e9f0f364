#!/usr/bin/env bash
# Makes the pi-image binary of this action's own source available, for every action.yml.
#
# What "this action's binary" is depends on the ref the workflow used:
#   - A release of the action carries action/release-digests.txt, committed by the release
#     workflow: the SHA-256 of each released archive. The archive for this runner is
#     downloaded from the release and must match the committed digest (no pre-installed
#     pi-image, no digest list from the same server: the action's tree is the anchor).
#   - Any other ref (a branch, a commit, a semver tag before its digests commit) has no
#     digests: its own source is built with cargo, and the build is kept in the tool
#     cache under a digest of that source, so it is built once per source and runner
#     (once per job on hosted runners, whose tool cache starts empty), not once per step.
# A `pi-image` on PATH whose --version is exactly this version is used first: later steps
# of a job reuse the first step's install this way (the binary's directory is added to
# GITHUB_PATH), and local `act` runs use a development build.
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
asset=pi-image-v$version-$target.tar.gz
digests=$action_dir/action/release-digests.txt
released=''
if [[ -n $target && -f $digests ]]; then
  released=$(awk -v a="$asset" '$2 == a && length($1) == 64 && $1 ~ /^[0-9a-f]+$/ { print $1 }' "$digests")
fi

cache_root=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}/pi-image

output() { # output KEY VALUE
  [[ -n ${GITHUB_OUTPUT-} ]] && printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
  return 0
}
publish() { # publish PATH SOURCE
  output bin "$1"
  output source "$2"
  [[ -n ${GITHUB_PATH-} ]] && dirname "$1" >>"$GITHUB_PATH"
  info "using $want from $1 ($2, $(($(date +%s) - started)) s)"
  exit 0
}

# 1. Already on PATH.
if [[ $mode == auto ]] && found=$(command -v pi-image 2>/dev/null); then
  have=$("$found" --version 2>/dev/null || true)
  if [[ $have == "$want" ]]; then
    publish "$found" path
  fi
  info "ignoring $found: it is \`${have:-unknown}\`, this action needs \`$want\`"
fi

# 2. The release binary, checked against the digest committed in the action's tree.
if [[ $mode == auto && -n $released ]]; then
  dir=$cache_root/$version/$target
  if [[ -x $dir/bin/pi-image && -f $dir.complete ]] && [[ $("$dir/bin/pi-image" --version 2>/dev/null) == "$want" ]]; then
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
  rm -rf "$dir" "$dir.complete"
  mkdir -p "$dir/bin"
  tar -xzf "$tmp/$asset" -C "$dir/bin" pi-image
  chmod 755 "$dir/bin/pi-image"
  [[ $("$dir/bin/pi-image" --version) == "$want" ]] || bail "$asset does not contain $want"
  : >"$dir.complete"
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
# The build is keyed on the source itself, so a branch or commit is built once.
key=$(cd "$action_dir" && find Cargo.toml Cargo.lock src -type f -print0 | LC_ALL=C sort -z |
  while IFS= read -r -d '' f; do printf '%s  %s\n' "$(sha256_of "$f")" "$f"; done | {
  if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi
} | cut -c1-16)
key=src-$version-${target:-$(uname -s)-$(uname -m)}-$key
dir=$cache_root/$key
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
