#!/usr/bin/env bash
# Checks an image that the real RPi-Distro/pi-gen built (through pi-image or on its own),
# reading the image without mounting it (debugfs for ext4, mtools for FAT), so it runs
# without root on any Linux with e2fsprogs, mtools, fdisk and python3.
#
#   scripts/real-pi-gen-check.sh PI_GEN_DIR [options]
#
# Options (each may be repeated where it makes sense):
#   --img-name NAME          IMG_NAME of the build [default: from PI_GEN_DIR/config]
#   --image FILE             the raw image [default: PI_GEN_DIR/work/NAME/export-image/*.img]
#   --build-log FILE         pi-gen's build.log [default: PI_GEN_DIR/work/NAME/build.log;
#                            container builds leave it in deploy/build.log]
#   --hostname NAME          /etc/hostname must say NAME
#   --expect PATH=UID:GID:MODE   owner and mode of PATH in the root filesystem (e.g. /etc=0:0:0755)
#   --contains PATH=TEXT     PATH in the root filesystem contains TEXT
#   --absent PATH            PATH is not in the root filesystem
#   --installed PKG          PKG is installed (dpkg status "install ok installed")
#   --seed FILE              FILE is the cloud-init user-data on the boot partition, and
#                            cloud-init is set up to read it there (pi-image's NoCloud config)
#   --reference FILE         the package list of a reference build (written by
#                            --write-packages): every package that differs must be one the
#                            build added on purpose (--added) or one of their dependencies
#   --added PKG              a package the build added on purpose (extra packages, cloud-init)
#   --write-packages FILE    write this image's "name version arch" list to FILE
#
# What it always checks: pi-gen's build.log says "Build finished"; the image has an MBR
# with a FAT `bootfs` and an ext4 `rootfs` partition whose PARTUUIDs the boot command line
# and fstab use; /etc, /usr, /var and / are root's and 0755; the apt sources are pi-gen's
# templates, byte for byte; apt has package lists for every source line; nothing pi-image
# uses during the build (the apt mirror hook, its files, the overlay staging) is left.
# Exit status: 0 when every check passes, 1 when one fails, 2 on bad usage.
set -uo pipefail

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $1 != -* ]] || usage
PI_GEN=$(cd "$1" && pwd) || usage
shift
img_name="" image="" build_log="" hostname="" seed="" reference="" write_packages=""
expects=() contains=() absent=() installed=() added=()
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage
  case $1 in
    --img-name) img_name=$2 ;;
    --image) image=$2 ;;
    --build-log) build_log=$2 ;;
    --hostname) hostname=$2 ;;
    --expect) expects+=("$2") ;;
    --contains) contains+=("$2") ;;
    --absent) absent+=("$2") ;;
    --installed) installed+=("$2") ;;
    --seed) seed=$2 ;;
    --reference) reference=$2 ;;
    --added) added+=("$2") ;;
    --write-packages) write_packages=$2 ;;
    *) usage ;;
  esac
  shift 2
done
for tool in debugfs mdir mtype sfdisk python3; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null ||
    { echo "real-pi-gen-check: $tool is missing (apt-get install e2fsprogs mtools fdisk python3)" >&2; exit 2; }
done
export PATH=$PATH:/usr/sbin:/sbin
if [[ -z $img_name ]]; then
  img_name=$(sed -n "s/^IMG_NAME='\(.*\)'$/\1/p; s/^IMG_NAME=\([^'].*\)$/\1/p" "$PI_GEN/config" 2>/dev/null | tail -n 1)
  [[ -n $img_name ]] || { echo "real-pi-gen-check: no IMG_NAME in $PI_GEN/config: pass --img-name" >&2; exit 2; }
fi
work=$PI_GEN/work/$img_name
if [[ -z $image ]]; then
  # shellcheck disable=SC2012 # pi-gen names: no odd characters
  image=$(ls -t "$work"/export-image/*"$img_name"*.img 2>/dev/null | head -n 1)
  [[ -n $image ]] || { echo "real-pi-gen-check: no image in $work/export-image: pass --image" >&2; exit 2; }
fi

failed=0
ok() { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; failed=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# The helpers are called through check(), which shellcheck cannot follow.
# shellcheck disable=SC2317
fs_cat() { debugfs -R "cat $1" "$ext" 2>/dev/null; }
fs_has() { debugfs -R "stat $1" "$ext" 2>&1 | grep -q '^Inode:'; }
fat_cat() { mtype -i "$fat" "::$1" 2>/dev/null; }
# uid:gid:mode (permission bits, octal) of a path in the root filesystem.
fs_owner() {
  debugfs -R "stat $1" "$ext" 2>/dev/null | python3 -c '
import re, sys
t = sys.stdin.read()
m = re.search(r"Mode:\s+(\d+)", t); u = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", t)
print("%d:%d:%04o" % (int(u.group(1)), int(u.group(2)), int(m.group(1), 8) & 0o7777) if m and u else "")'
}
owner_is() { [[ $(fs_owner "$1") == "$2" ]]; }
not() { ! "$@"; }
has_text() { grep -qF -- "$2" <<<"$1"; }
has_line() { grep -q -- "$2" <<<"$1"; }


# --- the build ---------------------------------------------------------------------------
# Its last run: from the last `Begin <root>` (pi-gen's first line; /pi-gen in a container).
last_run=$(awk '$2 == "Begin" && ($3 == root || $3 == "/pi-gen") { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' \
  root="$PI_GEN" "${build_log:-$work/build.log}" 2>/dev/null)
check "pi-gen's build.log ends its last run with 'Build finished'" has_line "$last_run" '\] Build finished$' 

# --- the partition table ----------------------------------------------------------------
read -r label_id p1_start p1_type p2_start p2_type < <(sfdisk --json "$image" 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
p = t.get("partitions", [])
get = lambda i, k: str(p[i][k]) if len(p) > i else "-"
print(t.get("id", "0x")[2:], get(0, "start"), get(0, "type"), get(1, "start"), get(1, "type"))')
check "MBR with a FAT (type c) and a Linux (type 83) partition" test "${p1_type:-}" = c -a "${p2_type:-}" = 83
fat="$image@@$(( ${p1_start:-0} * 512 ))"
ext="$image?offset=$(( ${p2_start:-0} * 512 ))"
export MTOOLS_SKIP_CHECK=1
check "boot partition is labelled bootfs" has_line "$(mlabel -s -i "$fat" :: 2>/dev/null)" ' bootfs *$'
check "root partition is an ext4 file system labelled rootfs" has_line "$(debugfs -R stats "$ext" 2>/dev/null)" '^Filesystem volume name: *rootfs$' 

cmdline=$(fat_cat cmdline.txt)
check "cmdline.txt names the root partition by PARTUUID ($label_id-02)" has_text "$cmdline" "root=PARTUUID=$label_id-02"
fstab=$(fs_cat /etc/fstab)
check "fstab mounts PARTUUID $label_id-01 on /boot/firmware" has_line "$fstab" "^PARTUUID=$label_id-01[[:space:]]*/boot/firmware"
check "fstab mounts PARTUUID $label_id-02 on /" has_line "$fstab" "^PARTUUID=$label_id-02[[:space:]]*/[[:space:]]"

# --- the root filesystem ----------------------------------------------------------------
for d in / /etc /usr /var; do
  check "$d is root's, mode 0755 (got $(fs_owner "$d"))" owner_is "$d" 0:0:0755
done
for e in "${expects[@]}"; do
  check "$e (got $(fs_owner "${e%%=*}"))" owner_is "${e%%=*}" "${e#*=}"
done
for c in "${contains[@]}"; do
  check "${c%%=*} contains '${c#*=}'" has_text "$(fs_cat "${c%%=*}")" "${c#*=}"
done
for a in "${absent[@]}"; do
  check "$a is not in the image" not fs_has "$a"
done
[[ -z $hostname ]] || check "hostname is $hostname" test "$(fs_cat /etc/hostname)" = "$hostname"

# --- apt ---------------------------------------------------------------------------------
release=$(sed -n "s/^RELEASE='\(.*\)'$/\1/p" "$PI_GEN/config" 2>/dev/null | tail -n 1)
release=${release:-bookworm}
[[ $release =~ ^[a-z][a-z0-9-]*$ ]] || { echo "real-pi-gen-check: RELEASE '$release' in the config is not a release name" >&2; exit 2; }
template=$PI_GEN/stage0/00-configure-apt/files/sources.list
[[ -f $PI_GEN/stage0/00-00-pi-image-mirrors/upstream/stage0/00-configure-apt/files/sources.list ]] &&
  template=$PI_GEN/stage0/00-00-pi-image-mirrors/upstream/stage0/00-configure-apt/files/sources.list
sources=$(fs_cat /etc/apt/sources.list)
template_text=$(cat "$template")
check "/etc/apt/sources.list is pi-gen's template, byte for byte" test "$sources" = "${template_text//RELEASE/$release}"
lists=$(debugfs -R "ls -p /var/lib/apt/lists" "$ext" 2>/dev/null | awk -F/ 'NF > 5 { print $6 }')
while read -r uri suite; do
  [[ -n $uri ]] || continue
  name=$(printf '%s' "$uri" | sed 's#^[a-z+]*://##; s#/*$##; s#/#_#g')_dists_${suite}_
  check "apt has the lists of $uri $suite" grep -q "^${name}\(In\)\{0,1\}Release$" <<<"$lists"
done < <(awk '$1 == "deb" { print $2, $3 }' <<<"$sources")
check "no package list is named after a build-time mirror list" not has_text "$lists" pi-image-mirrors
for leftover in /usr/local/sbin/pi-image-apt-mirrors /etc/apt/pi-image-mirrors.conf /etc/apt/pi-image-mirrors \
    /etc/apt/apt.conf.d/10pi-image-mirrors /etc/apt/apt.conf.d/80pi-image-apt /etc/apt/apt.conf.d/81pi-image-proxy \
    /var/lib/apt/pi-image-mirrors.state /.pi-image-overlay; do
  check "no $leftover" not fs_has "$leftover"
done

# --- packages ----------------------------------------------------------------------------
status=$(fs_cat /var/lib/dpkg/status)
# dpkg's status file: `list` prints "name version arch" of what is installed; `compare REF
# ADDED...` prints what differs from the reference list beyond the closure of ADDED under
# Depends, Pre-Depends and Recommends (pi-gen's NN-packages install Recommends).
dpkg_py=$(cat <<'PY'
import re, sys
pk = {}
for block in sys.stdin.read().split("\n\n"):
    f = {}
    for line in block.splitlines():
        if line[:1] not in (" ", "\t") and ":" in line:
            k, v = line.split(":", 1); f[k] = v.strip()
    if f.get("Status") == "install ok installed":
        pk[f["Package"]] = f
if sys.argv[1] == "list":
    for n in sorted(pk):
        print(n, pk[n]["Version"], pk[n].get("Architecture", ""))
    sys.exit(0)
ref = {l.split()[0] for l in open(sys.argv[2]) if l.strip()}
provides = {}
for n, f in pk.items():
    for p in re.split(r",\s*", f.get("Provides", "")):
        if p: provides.setdefault(p.split()[0], []).append(n)
def deps(f):
    for field in ("Depends", "Pre-Depends", "Recommends"):
        for alt in re.split(r",\s*", f.get(field, "")):
            for choice in alt.split("|"):
                name = choice.strip().split(" ")[0].split(":")[0]
                for n in [name] + provides.get(name, []):
                    if n in pk: yield n
closure, todo = set(), [a for a in sys.argv[3:] if a in pk]
while todo:
    n = todo.pop()
    if n in closure: continue
    closure.add(n); todo.extend(deps(pk[n]))
new = sorted(n for n in pk if n not in ref and n not in closure)
gone = sorted(n for n in ref if n not in pk)
out = []
if new: out.append("unexpected new: " + " ".join(new))
if gone: out.append("missing: " + " ".join(gone))
print("; ".join(out))
PY
)
packages=$(python3 -c "$dpkg_py" list <<<"$status")
check "dpkg lists installed packages ($(wc -l <<<"$packages"))" test -n "$packages"
[[ -z $write_packages ]] || printf '%s\n' "$packages" >"$write_packages"
for p in "${installed[@]}"; do
  check "$p is installed" has_line "$packages" "^$p "
done
if [[ -n $reference ]]; then
  verdict=$(python3 -c "$dpkg_py" compare "$reference" "${added[@]}" <<<"$status")
  check "the package set is the reference's plus what was added on purpose${verdict:+ ($verdict)}" test -z "$verdict"
fi

# --- the cloud-init seed -----------------------------------------------------------------
if [[ -n $seed ]]; then
  check "the boot partition holds the user-data" test "$(fat_cat user-data)" = "$(cat "$seed")"
  check "the boot partition holds meta-data with an instance-id" has_line "$(fat_cat meta-data)" '^instance-id:'
  check "cloud-init is installed" has_line "$packages" '^cloud-init '
  check "cloud-init reads its NoCloud seed from /boot/firmware" \
    has_text "$(fs_cat /etc/cloud/cloud.cfg.d/99_pi-image-nocloud.cfg)" "seedfrom: file:///boot/firmware/"
  check "cloud-init-local waits for /boot/firmware" \
    has_text "$(fs_cat /etc/systemd/system/cloud-init-local.service.d/pi-image-seed.conf)" "RequiresMountsFor=/boot/firmware"
fi

if [[ $failed == 0 ]]; then echo "real-pi-gen-check: every check passed ($image)"; else echo "real-pi-gen-check: some checks FAILED ($image)"; fi
exit "$failed"
