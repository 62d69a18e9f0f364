#!/usr/bin/env bash
# Makes the pi-image binary that matches this action available, for action.yml.
#
# The action's version is the `version` of its own Cargo.toml, so a ref of the action
# (a tag, a branch or a commit SHA) always runs the binary built from that source. In order:
#   1. `pi-image` already on PATH whose `pi-image --version` is exactly this version: used
#      as is. Later steps of a job reuse the first step's install this way, and a local
#      `act` run uses a development build by putting target/debug on PATH.
#   2. The prebuilt release binary for this runner (Linux x86_64/aarch64, macOS
#      x86_64/arm64) from the action repository's release `v<version>`: its SHA-256 is
#      checked against the release's SHA256SUMS and, when some `pi-image` with `verify`
#      is already installed, its Sigstore bundle against the release workflow's identity.
#   3. `cargo install --locked` from the action's own source (no release for this version,
#      another platform, or INPUT_INSTALL=source).
# Writes `bin` (the binary's path) and `source` (path, download or cargo) to GITHUB_OUTPUT
# and adds the binary's directory to GITHUB_PATH.
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
info() { printf 'pi-image install: %s\n' "$*"; }

action_dir=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set: run this from action.yml}
mode=${INPUT_INSTALL:-auto}
case $mode in auto | source) ;; *) bad_input "input \`install\` must be auto or source, not \`$(printf %q "$mode")\`" ;; esac
repo=${ACTION_REPOSITORY-}
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$action_dir/Cargo.toml" | head -n 1)
[[ -n $version ]] || bail "cannot read the version from $action_dir/Cargo.toml"
want="pi-image $version"
started=$(date +%s)

publish() { # publish PATH SOURCE
  local dir
  dir=$(dirname "$1")
  if [[ -n ${GITHUB_OUTPUT-} ]]; then
    printf 'bin=%s\nsource=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
  fi
  if [[ -n ${GITHUB_PATH-} ]]; then
    printf '%s\n' "$dir" >>"$GITHUB_PATH"
  fi
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

root=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}/pi-image/$version
sha256_check() { # sha256_check SUMS_LINE (run in the download directory)
  if command -v sha256sum >/dev/null; then
    sha256sum -c --status - <<<"$1"
  else
    shasum -a 256 -c --status - <<<"$1"
  fi
}

# 2. The release binary.
try_download() {
  local target asset base proto line
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) target=x86_64-unknown-linux-gnu ;;
    Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-gnu ;;
    Darwin-x86_64) target=x86_64-apple-darwin ;;
    Darwin-arm64) target=aarch64-apple-darwin ;;
    *)
      info "no prebuilt binary for $(uname -s) $(uname -m)"
      return 1
      ;;
  esac
  if [[ -z $repo ]]; then
    info "the action is used from a local path (uses: ./): no release to download from"
    return 1
  fi
  asset=pi-image-v$version-$target.tar.gz
  base=${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download/v$version
  # https only, except a loopback server (the tests serve a fake release locally).
  proto='=https'
  [[ $base =~ ^http://(127\.0\.0\.1|localhost)(:[0-9]+)?/ ]] && proto='=http'
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  info "downloading $base/$asset"
  if ! curl --proto "$proto" --tlsv1.2 -fsSL --retry 5 --retry-connrefused -o "$tmp/$asset" "$base/$asset" ||
    ! curl --proto "$proto" --tlsv1.2 -fsSL --retry 5 --retry-connrefused -o "$tmp/SHA256SUMS" "$base/SHA256SUMS"; then
    info "no release binary at $base (not released yet?)"
    return 1
  fi
  line=$(grep -E "^[0-9a-f]{64}  $asset\$" "$tmp/SHA256SUMS" || true)
  [[ -n $line ]] || bail "SHA256SUMS of release v$version lists no $asset"
  (cd "$tmp" && sha256_check "$line") || bail "SHA-256 mismatch for $asset: the download is not the released file"
  info "SHA-256 verified: ${line%% *}"
  # A pi-image that can verify Sigstore bundles (any version) checks who built it.
  if verifier=$(command -v pi-image 2>/dev/null) && "$verifier" verify --help >/dev/null 2>&1; then
    curl --proto "$proto" --tlsv1.2 -fsSL --retry 5 -o "$tmp/$asset.sigstore.json" "$base/$asset.sigstore.json" ||
      bail "release v$version has no Sigstore bundle for $asset"
    "$verifier" verify "$tmp/$asset" --bundle "$tmp/$asset.sigstore.json" --repository "$repo" ||
      bail "the Sigstore bundle of $asset does not verify for $repo"
    info "Sigstore bundle verified with $verifier"
  fi
  mkdir -p "$root/bin"
  tar -xzf "$tmp/$asset" -C "$root/bin" pi-image
  chmod 755 "$root/bin/pi-image"
  [[ $("$root/bin/pi-image" --version) == "$want" ]] || bail "$asset does not contain $want"
  publish "$root/bin/pi-image" download
}
if [[ $mode == auto ]]; then
  try_download || true
fi

# 3. From source.
command -v cargo >/dev/null ||
  bail "no prebuilt pi-image $version for this runner and no cargo to build it: install Rust (rustup) first, or use a released version of the action"
info "building pi-image $version from $action_dir with cargo install --locked"
CARGO_TARGET_DIR=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/pi-image-target \
  cargo install --locked --quiet --path "$action_dir" --root "$root" --force
publish "$root/bin/pi-image" cargo
