#!/usr/bin/env bash
# Run the hardened systemd unit for real: boot systemd in a podman container
# made from a minimal Debian bookworm, install the service with
# scripts/install-systemd.sh, and check it from inside.
#
# Usage: scripts/test-systemd.sh
#   IMGFLUX_BINARY=PATH  use this static binary instead of running
#                        scripts/build-static.sh
#   KEEP_WORKDIR=1       keep the scratch folder for debugging
#
# Checks: the service starts under its sandbox and returns 200 for /health,
# resizes a photo through /process, runs as a dynamic user with no
# capabilities, no_new_privs and a seccomp filter, and `systemctl stop` ends
# it with exit code 0. An invalid setting then fails the unit without
# restarts.
#
# The container is privileged because systemd needs mount and user namespaces
# to set up the unit's sandbox. It has no network besides its own loopback.
# Needs root, debootstrap and podman (installed if missing), and downloads
# about 50 MB of Debian packages.
set -euo pipefail

readonly SUITE=bookworm
readonly API_KEY=systemd-test-key
readonly PORT=3000

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
photo="$repo_root/../shared/bench-images/photo-2mp-1600x1200.jpg"

die() {
    echo "test-systemd: FAIL: $*" >&2
    exit 1
}

log() {
    echo "test-systemd: $*" >&2
}

[[ $EUID -eq 0 ]] || die "run as root: debootstrap and podman need it"
[[ -f "$photo" ]] || die "test photo not found at $photo"

install_missing_packages() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [[ ${#missing[@]} -eq 0 ]] && return 0

    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

install_missing_packages

# The mirror that apt already uses on this machine.
mirror="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
if [[ -z "$mirror" ]]; then
    mirror="$(awk '$1 == "deb" && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
fi
[[ -n "$mirror" ]] || die "no Debian mirror found in apt's sources; debootstrap needs one"

# --- Scratch folder and private container storage ---------------------------

work_dir="$(mktemp -d /tmp/imgflux-systemd-test.XXXXXX)"
container_name="imgflux-systemd-test-$$"
image_name="localhost/imgflux-systemd-test:$$"

cleanup() {
    local status=$?
    set +e
    if [[ -n "${CONTAINERS_STORAGE_CONF:-}" ]]; then
        podman rm --force --ignore --time 5 "$container_name" >/dev/null 2>&1
        podman rmi --force --ignore "$image_name" >/dev/null 2>&1
    fi
    findmnt --list --noheadings --output TARGET | grep "^$work_dir/" | sort -r |
        while read -r mount_point; do umount "$mount_point"; done
    if findmnt --list --noheadings --output TARGET | grep -q "^$work_dir/"; then
        log "mounts remain under $work_dir; leaving it in place"
    elif [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then
        log "kept $work_dir"
    else
        rm -rf "$work_dir"
    fi
    exit "$status"
}
trap cleanup EXIT

mkdir -p "$work_dir/storage" "$work_dir/run" "$work_dir/bin"
cat >"$work_dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work_dir/storage"
runroot = "$work_dir/run"
EOF
cat >"$work_dir/containers.conf" <<EOF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work_dir/events.log"

[network]
network_config_dir = "$work_dir/networks"
EOF
export CONTAINERS_STORAGE_CONF="$work_dir/storage.conf"
export CONTAINERS_CONF="$work_dir/containers.conf"

# --- Binary and Debian root ------------------------------------------------------

if [[ -n "${IMGFLUX_BINARY:-}" ]]; then
    cp "$IMGFLUX_BINARY" "$work_dir/bin/imgflux"
else
    "$repo_root/scripts/build-static.sh" --out "$work_dir/bin/imgflux"
fi
cp "$photo" "$work_dir/bin/photo.jpg"

log "debootstrap $SUITE from $mirror"
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,python3-minimal \
    "$SUITE" "$work_dir/rootfs" "$mirror" >"$work_dir/debootstrap.log" 2>&1 ||
    die "debootstrap failed: $(tail -n 5 "$work_dir/debootstrap.log")"
# Nothing else should start next to the service under test.
rm -f "$work_dir/rootfs/etc/systemd/system/multi-user.target.wants/"*
tar --create --numeric-owner --directory "$work_dir/rootfs" --file "$work_dir/rootfs.tar" .
podman import --quiet "$work_dir/rootfs.tar" "$image_name" >/dev/null

# --- Boot systemd --------------------------------------------------------------

podman run --detach --name "$container_name" --privileged --systemd=always \
    --network=none --ulimit nofile=8192:8192 --ulimit nproc=4096:4096 \
    --volume "$repo_root:/src:ro" --volume "$work_dir/bin:/imgflux-test:ro" \
    "$image_name" /sbin/init >/dev/null

in_container() {
    podman exec "$container_name" "$@"
}

show_journal_and_die() {
    in_container journalctl --no-pager -u imgflux -n 40 2>&1 | sed 's/^/    /' >&2 || true
    die "$*"
}

booted=0
for _ in $(seq 1 60); do
    state="$(in_container systemctl is-system-running 2>/dev/null || true)"
    if [[ "$state" == running || "$state" == degraded ]]; then
        booted=1
        break
    fi
    sleep 0.5
done
[[ $booted -eq 1 ]] || die "systemd in the container did not finish booting within 30 s (state '$state')"
log "systemd booted ($state)"

# --- Install and start ---------------------------------------------------------

in_container /src/scripts/install-systemd.sh --binary /imgflux-test/imgflux >/dev/null
in_container sh -c "printf 'API_KEYS=%s\nPORT=%s\nHOST=127.0.0.1\n' '$API_KEY' '$PORT' >>/etc/imgflux/imgflux.env"
in_container systemctl enable --now imgflux.service >/dev/null 2>&1 ||
    show_journal_and_die "systemctl enable --now imgflux failed"

ready=0
for _ in $(seq 1 60); do
    if in_container curl --silent --fail --max-time 2 "http://127.0.0.1:$PORT/health" >/dev/null; then
        ready=1
        break
    fi
    in_container systemctl is-failed --quiet imgflux.service &&
        show_journal_and_die "imgflux.service failed at start-up"
    sleep 0.5
done
[[ $ready -eq 1 ]] || show_journal_and_die "/health did not return 200 within 30 s"
log "imgflux.service is running and /health returned 200"

# --- Identity and sandbox --------------------------------------------------------

main_pid="$(in_container systemctl show --property=MainPID --value imgflux.service)"
[[ "$main_pid" =~ ^[1-9][0-9]*$ ]] || show_journal_and_die "imgflux.service has no main PID ('$main_pid')"
status_file="$(in_container cat "/proc/$main_pid/status")"
uid="$(awk '/^Uid:/ {print $2}' <<<"$status_file")"
# systemd allocates dynamic users from 61184 to 65519.
[[ "$uid" -ge 61184 && "$uid" -le 65519 ]] || show_journal_and_die "service runs as UID $uid, not a dynamic user"
[[ "$(awk '/^CapEff:/ {print $2}' <<<"$status_file")" == 0000000000000000 ]] ||
    show_journal_and_die "service has capabilities: $(grep '^CapEff:' <<<"$status_file")"
[[ "$(awk '/^CapBnd:/ {print $2}' <<<"$status_file")" == 0000000000000000 ]] ||
    show_journal_and_die "service has a capability bounding set: $(grep '^CapBnd:' <<<"$status_file")"
[[ "$(awk '/^NoNewPrivs:/ {print $2}' <<<"$status_file")" == 1 ]] ||
    show_journal_and_die "service runs without no_new_privs"
[[ "$(awk '/^Seccomp:/ {print $2}' <<<"$status_file")" == 2 ]] ||
    show_journal_and_die "service runs without a seccomp filter"
log "service runs as dynamic UID $uid with no capabilities, no_new_privs and seccomp"

# --- A real request --------------------------------------------------------------

# 1600x1200 resized to w=400 keeps the 4:3 aspect, so the PNG is 400x300.
status="$(in_container curl --silent --output /tmp/out.png --write-out '%{http_code}' --max-time 60 \
    --header "x-api-key: $API_KEY" --form image=@/imgflux-test/photo.jpg \
    "http://127.0.0.1:$PORT/process?w=400")"
[[ "$status" == 200 ]] || show_journal_and_die "POST /process returned $status"
in_container python3 -c '
import struct
import sys

data = open("/tmp/out.png", "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"not a PNG: first bytes {data[:8]!r}")
size = struct.unpack(">II", data[16:24])
if size != (400, 300):
    sys.exit(f"PNG is {size[0]}x{size[1]}, expected 400x300")
' || show_journal_and_die "the reply is not a 400x300 PNG"
log "POST /process returned a 400x300 PNG"

# --- Stop ----------------------------------------------------------------------

in_container systemctl stop imgflux.service
result="$(in_container systemctl show --property=Result --value imgflux.service)"
exit_status="$(in_container systemctl show --property=ExecMainStatus --value imgflux.service)"
[[ "$result" == success && "$exit_status" == 0 ]] ||
    show_journal_and_die "after systemctl stop: Result=$result ExecMainStatus=$exit_status, expected success and 0"
log "systemctl stop: Result=success, exit status 0"

# --- Invalid settings ------------------------------------------------------------

# An invalid setting makes imgflux exit 2, which the unit must not restart.
in_container sh -c 'echo IMGFLUX_WORKERS=many >>/etc/imgflux/imgflux.env'
in_container systemctl reset-failed imgflux.service
in_container systemctl start imgflux.service >/dev/null 2>&1 || true
sleep 4
active_state="$(in_container systemctl show --property=ActiveState --value imgflux.service)"
restarts="$(in_container systemctl show --property=NRestarts --value imgflux.service)"
exit_status="$(in_container systemctl show --property=ExecMainStatus --value imgflux.service)"
[[ "$active_state" == failed && "$restarts" == 0 && "$exit_status" == 2 ]] ||
    show_journal_and_die "with an invalid setting: ActiveState=$active_state NRestarts=$restarts" \
        "ExecMainStatus=$exit_status, expected failed, 0 and 2"
log "an invalid setting stops the service with exit status 2 and no restart"

echo "test-systemd: PASS"
