#!/usr/bin/env bash
# Runs one pi-image subcommand for action.yml. Every action input arrives as an
# INPUT_<NAME> environment variable (action.yml maps them by hand: composite actions get
# no INPUT_* variables of their own, actions/runner#665), never through ${{ }} in a script.
#
# An empty input is "not set": it is neither exported nor passed as a flag, so the
# binary's default applies, and so does any variable of the same name that the workflow
# set in its own `env:` (e.g. a job-level IMG_NAME). The table below is the one place
# that says which input becomes which variable or flag, for which commands; the tests
# check it against action.yml.
set -euo pipefail

# Every value this script prints comes from a workflow's inputs: hostile. An annotation's
# message is escaped as actions/toolkit does (no value can end it or start a line), plain
# lines quote values with %q (no line breaks) and defuse the legacy `##[` syntax, and
# credentials in URLs are masked before anything is printed.
esc() {
  local s=${1//'%'/%25}
  s=${s//$'\r'/%0D}
  s=${s//$'\n'/%0A}
  printf '%s' "${s//'##['/##%5B}"
}
bail() {
  printf '::error::pi-image action: %s\n' "$(esc "$(redact "$*")")"
  exit 2
}
warn() { printf '::warning::pi-image action: %s\n' "$(esc "$(redact "$*")")"; }
# `scheme://user:password@` anywhere in a value.
cred_re='([A-Za-z][A-Za-z0-9+.-]*://)([^/?#[:space:]]+)@'
redact() {
  local s=$1 out=''
  while [[ $s =~ $cred_re ]]; do
    out+=${s%%"${BASH_REMATCH[0]}"*}${BASH_REMATCH[1]}'***@'
    s=${s#*"${BASH_REMATCH[0]}"}
  done
  printf '%s' "$out$s"
}
mask_credentials() {
  local s=$1 userinfo
  while [[ $s =~ $cred_re ]]; do
    userinfo=${BASH_REMATCH[2]}
    printf '::add-mask::%s\n' "$(esc "$userinfo")"
    [[ $userinfo == *:?* ]] && printf '::add-mask::%s\n' "$(esc "${userinfo#*:}")"
    s=${s#*"${BASH_REMATCH[0]}"}
  done
}
# One line for the log: words with only plain characters as they are, any other %q-quoted
# (so no line break survives), `##[` defused, credentials hidden.
show() {
  local line='' w
  for w in "$@"; do
    if [[ -n $w && $w =~ ^[][A-Za-z0-9_./:=@%+,*^~-]+$ ]]; then line+=" $w"; else line+=" $(printf %q "$w")"; fi
  done
  line=$(redact "${line# }")
  printf '%s\n' "${line//'##['/##%5B}"
}
for v in "${!INPUT_@}"; do mask_credentials "${!v}"; done

COMMANDS="prepare-mirrors run-pi-gen collect-artifacts manifest smoke sign verify release pipeline doctor"

# input | kind | target | commands ("*" = all). Kinds:
#   env    exported as the variable TARGET
#   flag   TARGET VALUE
#   bool   TARGET when the input is true (true/false)
#   lines  TARGET LINE for each non-empty line
#   words  TARGET WORD for each whitespace-separated word
#   pos    each non-empty line as a positional argument
#   secret exported as the variable TARGET, never printed
TABLE='
img-name                    | env    | IMG_NAME                    | *
output-dir                  | env    | OUTPUT_DIR                  | *
pi-gen-dir                  | env    | PI_GEN_DIR                  | prepare-mirrors run-pi-gen collect-artifacts manifest pipeline
pi-gen-url                  | env    | PI_GEN_URL                  | prepare-mirrors run-pi-gen manifest pipeline
pi-gen-branch               | env    | PI_GEN_BRANCH               | prepare-mirrors run-pi-gen manifest pipeline
pi-gen-ref                  | env    | PI_GEN_REF                  | prepare-mirrors run-pi-gen manifest pipeline
arm64                       | env    | ARM64                       | prepare-mirrors run-pi-gen manifest pipeline
pi-gen-stages               | env    | PI_GEN_STAGES               | run-pi-gen manifest pipeline
offline                     | env    | MIRRORS_OFFLINE             | prepare-mirrors pipeline
keep-mirrors-in-image       | env    | KEEP_MIRRORS_IN_IMAGE       | prepare-mirrors pipeline
skip-mirror-rewrite         | env    | SKIP_MIRROR_REWRITE         | prepare-mirrors pipeline
apt-mirror-raspbian         | env    | APT_MIRROR_RASPBIAN         | prepare-mirrors pipeline
apt-mirror-raspberrypi      | env    | APT_MIRROR_RASPBERRYPI      | prepare-mirrors pipeline
debian-mirror               | env    | DEBIAN_MIRROR               | prepare-mirrors pipeline
apt-rewrite-mirrors         | env    | APT_REWRITE_MIRRORS         | prepare-mirrors pipeline
apt-proxy                   | env    | APT_PROXY                   | prepare-mirrors pipeline
apt-opts                    | env    | APT_OPTS                    | prepare-mirrors pipeline
apt-retries                 | env    | APT_RETRIES                 | prepare-mirrors pipeline
apt-timeout                 | env    | APT_TIMEOUT                 | prepare-mirrors pipeline
probe-timeout               | env    | MIRROR_PROBE_TIMEOUT        | prepare-mirrors pipeline
probe-retries               | env    | MIRROR_PROBE_RETRIES        | prepare-mirrors pipeline
allow-armhf                 | env    | ALLOW_ARMHF                 | run-pi-gen pipeline
user-data                   | env    | USER_DATA                   | run-pi-gen pipeline
no-user-data                | bool   | --no-user-data              | run-pi-gen
skip-cloud-init-validation  | env    | SKIP_CLOUD_INIT_VALIDATION  | run-pi-gen pipeline
overlay                     | env    | OVERLAY_DIR                 | run-pi-gen pipeline
overlay-owner               | lines  | --overlay-owner             | run-pi-gen
packages                    | env    | EXTRA_PACKAGES              | run-pi-gen pipeline
chroot-script               | env    | CHROOT_SCRIPT               | run-pi-gen pipeline
hostname                    | env    | TARGET_HOSTNAME             | run-pi-gen pipeline
enable-ssh                  | env    | ENABLE_SSH                  | run-pi-gen pipeline
settings                    | lines  | --setting                   | run-pi-gen
strategy                    | env    | PI_GEN_STRATEGY             | run-pi-gen pipeline
container-image             | env    | PI_GEN_IMAGE                | run-pi-gen pipeline
build-timeout               | env    | BUILD_TIMEOUT               | run-pi-gen pipeline
stall-timeout               | env    | STALL_TIMEOUT               | run-pi-gen pipeline
skip-kernel-check           | env    | SKIP_KERNEL_CHECK           | run-pi-gen pipeline
pass-env                    | env    | PI_GEN_PASS_ENV             | run-pi-gen pipeline
min-free-gb                 | env    | REQUIRED_SPACE_GB           | run-pi-gen doctor pipeline
install-deps                | bool   | --install-deps              | run-pi-gen
continue                    | bool   | --continue                  | run-pi-gen
outage-dir                  | env    | OUTAGE_DIR                  | run-pi-gen pipeline
dry-run                     | bool   | --dry-run                   | run-pi-gen release
deploy-dir                  | env    | DEPLOY_DIR                  | collect-artifacts pipeline
max-depth                   | env    | MAX_SCAN_DEPTH              | collect-artifacts pipeline
image                       | flag   | --image                     | collect-artifacts
xz-preset                   | env    | XZ_PRESET                   | collect-artifacts pipeline
threads                     | env    | XZ_THREADS                  | collect-artifacts pipeline
move                        | bool   | --move                      | collect-artifacts
chown                       | flag   | --chown                     | collect-artifacts
build-log                   | env    | BUILD_LOG                   | collect-artifacts manifest pipeline
channel                     | env    | RELEASE_CHANNEL             | manifest pipeline
title                       | env    | RELEASE_TITLE               | manifest pipeline
pi-gen-commit               | env    | PI_GEN_COMMIT               | manifest pipeline
build-start                 | env    | BUILD_START                 | manifest
build-end                   | env    | BUILD_END                   | manifest
options                     | lines  | --option                    | manifest
smoke-dir                   | env    | SMOKE_DIR                   | manifest smoke
verifier-json               | flag   | --verifier-json             | manifest
repo-dir                    | flag   | --repo-dir                  | manifest
notes                       | flag   | --notes                     | manifest release
smoke-image                 | env    | SMOKE_IMAGE                 | smoke pipeline
machine                     | env    | SMOKE_MACHINE               | smoke pipeline
smoke-timeout               | env    | SMOKE_TIMEOUT               | smoke pipeline
markers                     | lines  | --marker                    | smoke
failure-markers             | lines  | --failure-marker            | smoke
inject                      | lines  | --inject                    | smoke
collect                     | lines  | --collect                   | smoke
max-reboots                 | flag   | --max-reboots               | smoke
shutdown-grace              | flag   | --shutdown-grace            | smoke
append                      | flag   | --append                    | smoke
files                       | pos    | -                           | sign verify
fulcio-url                  | flag   | --fulcio-url                | sign
rekor-url                   | flag   | --rekor-url                 | sign
tsa-url                     | flag   | --tsa-url                   | sign
trust-config                | flag   | --trust-config              | sign verify
identity-token              | secret | SIGSTORE_ID_TOKEN           | sign
key                         | flag   | --key                       | sign
bundle                      | flag   | --bundle                    | verify
certificate-identity        | flag   | --certificate-identity      | verify
certificate-identity-regexp | flag   | --certificate-identity-regexp | verify
certificate-oidc-issuer     | flag   | --certificate-oidc-issuer   | verify
repository                  | env    | GITHUB_REPOSITORY           | manifest release
verify-repository           | flag   | --repository                | verify
manifest                    | flag   | --manifest                  | release verify
tag                         | flag   | --tag                       | release
draft                       | bool   | --draft                     | release
publish                     | bool   | --publish                   | release pipeline
assets                      | lines  | --assets                    | release
prune                       | bool   | --prune                     | release
allow-unsmoked              | bool   | --allow-unsmoked            | release
github-token                | secret | GITHUB_TOKEN                | release pipeline
api-url                     | env    | GITHUB_API_URL              | release pipeline
upload-url                  | env    | GITHUB_UPLOAD_URL           | release pipeline
attempts                    | flag   | --attempts                  | release
restart                     | bool   | --restart                   | pipeline
skip                        | words  | --skip                      | pipeline
apply                       | bool   | --apply                     | doctor
'

# `--table` prints the table (for the tests); nothing else is read from the command line.
if [[ ${1-} == --table ]]; then
  printf '%s\n' "$TABLE"
  exit 0
fi

command=${INPUT_COMMAND-}
[[ -n $command ]] || bail "the \`command\` input is required (one of: $COMMANDS)"
[[ " $COMMANDS " == *" $command "* ]] || bail "unknown command \`$(printf %q "$command")\` (one of: $COMMANDS)"
bin=${PI_IMAGE_BIN:-pi-image}

argv=()
positional=()
shown_env=()
while IFS='|' read -r name kind target commands; do
  name=${name//[[:space:]]/}
  [[ -n $name ]] || continue
  kind=${kind//[[:space:]]/}
  target=${target//[[:space:]]/}
  read -r -a cmds <<<"$commands"
  commands="${cmds[*]}"
  var=INPUT_${name//-/_}
  var=${var^^}
  value=${!var-}
  [[ -n $value ]] || continue
  if [[ $commands != "*" && " $commands " != *" $command "* ]]; then
    # Secrets have defaults (github-token: the workflow's token): ignore them quietly.
    [[ $kind == secret ]] && continue
    warn "input \`$name\` is not used by \`$command\` (only by: $commands); ignored"
    continue
  fi
  case $kind in
    env)
      export "$target=$value"
      shown_env+=("$target=$value")
      ;;
    secret)
      export "$target=$value"
      shown_env+=("$target=***")
      ;;
    flag) argv+=("$target" "$value") ;;
    bool)
      case ${value,,} in
        true) argv+=("$target") ;;
        false) ;;
        *) bail "input \`$name\` must be true or false, not \`$(printf %q "$value")\`" ;;
      esac
      ;;
    lines | pos)
      while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ -n ${line//[[:space:]]/} ]] || continue
        if [[ $kind == pos ]]; then positional+=("$line"); else argv+=("$target" "$line"); fi
      done <<<"$value"
      ;;
    words)
      read -r -a words <<<"${value//$'\n'/ }"
      for w in "${words[@]}"; do argv+=("$target" "$w"); done
      ;;
    *) bail "internal: unknown kind \`$kind\` for input \`$name\`" ;;
  esac
done <<<"$TABLE"

# The seed: without a user-data input or variable and without the conventional
# cloud-init/user-data.yaml in the workspace, run-pi-gen gets the action's default seed.
if [[ $command == run-pi-gen || $command == pipeline ]] && [[ -z ${USER_DATA-} && ! -e cloud-init/user-data.yaml ]] &&
  [[ " ${argv[*]-} ${INPUT_ARGS-} " != *" --no-user-data "* && -n ${GITHUB_ACTION_PATH-} ]]; then
  export USER_DATA=$GITHUB_ACTION_PATH/cloud-init/user-data.yaml
  shown_env+=("USER_DATA=$USER_DATA")
  show pi-image action: no cloud-init/user-data.yaml in "$PWD": using the default seed of the action
fi

# `args`: extra arguments, one per line, appended last (a later flag wins).
while IFS= read -r line || [[ -n $line ]]; do
  line=${line%$'\r'}
  [[ -n ${line//[[:space:]]/} ]] && argv+=("$line")
done <<<"${INPUT_ARGS-}"

((${#positional[@]})) && argv+=(-- "${positional[@]}")

show pi-image action: "$command" "${argv[@]}"
((${#shown_env[@]})) && show pi-image action: with "${shown_env[@]}"
# The inputs have become flags and variables: the binary and everything it starts get
# no INPUT_* copy (github-token's among them).
unset "${!INPUT_@}"
exec "$bin" "$command" "${argv[@]}"
