#!/usr/bin/env bash
# Build and run the final stage of Dockerfile.distroless without a Docker
# engine or a registry, and check the running container from the outside.
#
# Usage: scripts/test-container.sh
#   IMGFLUX_BINARY=PATH  use this static binary instead of running
#                        scripts/build-static.sh
#   KEEP_WORKDIR=1       keep the scratch folder (storage, logs) for debugging
#
# Steps:
#   1. Install buildah, podman, skopeo, runc and their helpers if missing.
#   2. Build the static musl binary on the host (scripts/build-static.sh).
#   3. Assemble a stand-in for gcr.io/distroless/static-debian12:nonroot from
#      Debian's base-files, netbase, tzdata, media-types and ca-certificates,
#      with the nonroot user 65532, and tag it under that name.
#   4. Build the Dockerfile's final stage with buildah (chroot isolation). The
#      builder stage needs a network and the rust image, which CI lacks. So the
#      script copies the Dockerfile's lines from its last FROM to its end and
#      changes only one: `COPY --from=builder` becomes a COPY from a context
#      folder that contains the host-built binary.
#   5. Check the image size, run it read-only with no capabilities, resize a
#      photo through /process, check the user, stop it with SIGTERM and expect
#      exit code 0.
#
# Containers and images live in a private storage folder that the script
# deletes on exit, so it leaves nothing in the host's podman storage. Needs
# root.
set -euo pipefail

readonly BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
readonly NONROOT_ID=65532
# Size target for the whole image, in bytes (10 MiB). It applies to the
# gzip-compressed image, which is what a pull transfers and what registries
# show; the uncompressed size is reported beside it.
readonly MAX_COMPRESSED_IMAGE_BYTES=$((10 * 1024 * 1024))
readonly API_KEY=container-test-key

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared_dir="$repo_root/../shared"
photo="$shared_dir/bench-images/photo-2mp-1600x1200.jpg"

die() {
    echo "test-container: FAIL: $*" >&2
    exit 1
}

log() {
    echo "test-container: $*" >&2
}

[[ $EUID -eq 0 ]] || die "run as root: buildah and podman use root storage here"
[[ -f "$photo" ]] || die "test photo not found at $photo"

install_missing_packages() {
    local missing=()
    local command package
    for pair in buildah:buildah podman:podman skopeo:skopeo runc:runc \
        fuse-overlayfs:fuse-overlayfs newuidmap:uidmap curl:curl \
        python3:python3 dpkg-deb:dpkg file:file; do
        command="${pair%%:*}"
        package="${pair#*:}"
        command -v "$command" >/dev/null || missing+=("$package")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0

    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

install_missing_packages

# --- Scratch folder and private container storage ---------------------------

work_dir="$(mktemp -d /tmp/imgflux-container-test.XXXXXX)"
container_name="imgflux-test-$$"
image_name="localhost/imgflux-test:$$"

cleanup() {
    local status=$?
    # Cleanup goes on past a failed step, so errexit is off from here.
    set +e
    if [[ -n "${CONTAINERS_STORAGE_CONF:-}" ]]; then
        podman rm --force --ignore "$container_name" >/dev/null 2>&1 || true
        buildah rm --all >/dev/null 2>&1 || true
        podman rmi --force --ignore "$image_name" "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
    # The overlay driver may leave its own mounts in the storage folder.
    findmnt --list --noheadings --output TARGET | grep "^$work_dir/" | sort -r |
        while read -r mount_point; do umount "$mount_point" || true; done
    # Never delete through a mount that is still in place.
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

mkdir -p "$work_dir/storage" "$work_dir/run" "$work_dir/context"
cat >"$work_dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work_dir/storage"
runroot = "$work_dir/run"
EOF
# runc with cgroupfs works without systemd as PID 1, which CI lacks.
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

# --- Static binary -----------------------------------------------------------

if [[ -n "${IMGFLUX_BINARY:-}" ]]; then
    cp "$IMGFLUX_BINARY" "$work_dir/context/imgflux"
else
    "$repo_root/scripts/build-static.sh" --out "$work_dir/context/imgflux"
fi
binary_bytes="$(stat -c %s "$work_dir/context/imgflux")"

# --- Stand-in for the distroless base ----------------------------------------

# Assemble the files that distroless/static-debian12 carries: Debian's base
# files, /etc/services, time zones, MIME types, a CA bundle, the users root,
# nobody and nonroot, and /tmp and /home/nonroot with their usual modes.
assemble_base_rootfs() {
    local rootfs="$1"
    local debs="$work_dir/debs"
    mkdir -p "$rootfs" "$debs"
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root base-files netbase tzdata media-types ca-certificates)
    for deb in "$debs"/*.deb; do
        dpkg-deb --extract "$deb" "$rootfs"
    done

    # ca-certificates builds its bundle in a maintainer script, which
    # dpkg-deb --extract does not run. The bundle is the concatenation of the
    # certificates that its default configuration enables.
    mkdir -p "$rootfs/etc/ssl/certs"
    cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
    local cert_count
    cert_count="$(grep -c 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt")"
    [[ "$cert_count" -gt 50 ]] || die "CA bundle has only $cert_count certificates"

    # Drop what a base without a shell cannot use: scripts, manuals and the
    # certificate sources. Copyright files stay, as in distroless.
    rm -rf "$rootfs/usr/sbin/update-ca-certificates" "$rootfs/usr/share/ca-certificates" \
        "$rootfs/usr/share/man" "$rootfs/usr/share/info" "$rootfs/usr/share/lintian" \
        "$rootfs/usr/share/bug" "$rootfs/etc/update-motd.d" "$rootfs/etc/profile.d" \
        "$rootfs/etc/skel"
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete

    cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:$NONROOT_ID:$NONROOT_ID:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$rootfs/etc/group" <<EOF
root:x:0:
tty:x:5:
staff:x:50:
nogroup:x:65534:
nonroot:x:$NONROOT_ID:
EOF
    echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
    chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"

    mkdir -p "$rootfs/tmp" "$rootfs/home/nonroot" "$rootfs/root"
    chmod 1777 "$rootfs/tmp"
    chmod 0700 "$rootfs/home/nonroot" "$rootfs/root"
    chown "$NONROOT_ID:$NONROOT_ID" "$rootfs/home/nonroot"
}

log "assembling $BASE_IMAGE from Debian packages"
assemble_base_rootfs "$work_dir/rootfs"
tar --create --numeric-owner --directory "$work_dir/rootfs" --file "$work_dir/base.tar" .
# The configuration matches the published image: user nonroot, its home as
# the working folder, and the CA bundle in SSL_CERT_FILE.
podman import --quiet \
    --change "USER $NONROOT_ID" \
    --change "WORKDIR /home/nonroot" \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    "$work_dir/base.tar" "$BASE_IMAGE" >/dev/null

# --- Final stage of Dockerfile.distroless ------------------------------------

dockerfile="$repo_root/Dockerfile.distroless"
containerfile="$work_dir/Containerfile"
last_from_line="$(grep -n '^FROM ' "$dockerfile" | tail -n 1 | cut -d: -f1)"
[[ -n "$last_from_line" ]] || die "no FROM line in $dockerfile"
tail -n "+$last_from_line" "$dockerfile" >"$containerfile"

copy_lines="$(grep -c '^COPY --from=builder ' "$containerfile" || true)"
[[ "$copy_lines" -eq 1 ]] ||
    die "the final stage has $copy_lines 'COPY --from=builder' lines; this test handles exactly 1"
# In a COPY from the build context, a source path that starts with / is
# relative to the context, so /imgflux is $work_dir/context/imgflux.
sed -i 's/^COPY --from=builder /COPY /' "$containerfile"
grep -q '^FROM gcr.io/distroless/static-debian12:nonroot' "$containerfile" ||
    die "the final stage does not start FROM $BASE_IMAGE"
log "final stage as built:"
sed 's/^/    /' "$containerfile" >&2

# HEALTHCHECK exists only in the Docker image format, so build that format.
buildah build --quiet --isolation chroot --pull=never --format docker \
    --file "$containerfile" --tag "$image_name" "$work_dir/context" >/dev/null

# --- Image checks ------------------------------------------------------------

inspect() {
    podman image inspect --format "$1" "$image_name"
}
[[ "$(inspect '{{.Config.User}}')" == "$NONROOT_ID:$NONROOT_ID" ]] ||
    die "image user is '$(inspect '{{.Config.User}}')', expected $NONROOT_ID:$NONROOT_ID"
[[ "$(inspect '{{json .Config.Entrypoint}}')" == '["/imgflux"]' ]] ||
    die "image entrypoint is $(inspect '{{json .Config.Entrypoint}}'), expected [\"/imgflux\"]"
[[ "$(inspect '{{json .Config.ExposedPorts}}')" == *'"3000/tcp"'* ]] ||
    die "image does not expose 3000/tcp"
[[ "$(inspect '{{json .Config.Healthcheck.Test}}')" == '["CMD","/imgflux","healthcheck"]' ]] ||
    die "image healthcheck is $(inspect '{{json .Config.Healthcheck.Test}}')"

image_bytes="$(inspect '{{.Size}}')"
base_bytes="$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")"
compressed_bytes="$(podman save --quiet --format docker-archive "$image_name" | gzip -c | wc -c)"
base_compressed_bytes="$(podman save --quiet --format docker-archive "$BASE_IMAGE" | gzip -c | wc -c)"
log "binary: $binary_bytes bytes"
log "base image: $base_bytes bytes uncompressed, $base_compressed_bytes bytes as gzipped docker-archive"
log "image: $image_bytes bytes uncompressed, $compressed_bytes bytes as gzipped docker-archive"
[[ "$compressed_bytes" -le "$MAX_COMPRESSED_IMAGE_BYTES" ]] ||
    die "image is $compressed_bytes bytes compressed, over the $MAX_COMPRESSED_IMAGE_BYTES-byte target"

# --- Run ---------------------------------------------------------------------

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Podman schedules health checks with systemd timers, which CI lacks, so the
# container runs without them and the test runs the image's HEALTHCHECK
# command, checked above, with `podman exec`.
podman run --detach --name "$container_name" \
    --read-only --cap-drop=ALL --security-opt=no-new-privileges \
    --ulimit nofile=4096:4096 --ulimit nproc=2048:2048 --pids-limit=256 --memory=1g \
    --no-healthcheck \
    --env API_KEYS="$API_KEY" --env IMGFLUX_WORKERS=2 \
    --publish "127.0.0.1:$port:3000" \
    "$image_name" >/dev/null
log "container $container_name listens on 127.0.0.1:$port"

show_logs_and_die() {
    podman logs "$container_name" 2>&1 | tail -n 40 | sed 's/^/    /' >&2 || true
    die "$*"
}

ready=0
for _ in $(seq 1 60); do
    if curl --silent --fail --max-time 2 "http://127.0.0.1:$port/health" >/dev/null; then
        ready=1
        break
    fi
    [[ "$(podman inspect --format '{{.State.Running}}' "$container_name")" == true ]] ||
        show_logs_and_die "container exited before /health returned 200"
    sleep 0.5
done
[[ $ready -eq 1 ]] || show_logs_and_die "/health did not return 200 within 30 s"

podman exec "$container_name" /imgflux healthcheck >/dev/null ||
    show_logs_and_die "the image's HEALTHCHECK command failed"

# The service runs as nonroot: every UID and GID of the process is 65532.
container_pid="$(podman inspect --format '{{.State.Pid}}' "$container_name")"
uid_line="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$container_pid/status")"
gid_line="$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$container_pid/status")"
expected_ids="$NONROOT_ID $NONROOT_ID $NONROOT_ID $NONROOT_ID"
[[ "$uid_line" == "$expected_ids" ]] || show_logs_and_die "process UIDs are '$uid_line', expected '$expected_ids'"
[[ "$gid_line" == "$expected_ids" ]] || show_logs_and_die "process GIDs are '$gid_line', expected '$expected_ids'"
cap_effective="$(awk '/^CapEff:/ {print $2}' "/proc/$container_pid/status")"
[[ "$cap_effective" == 0000000000000000 ]] ||
    show_logs_and_die "process has capabilities $cap_effective, expected none"

# A request without a key is rejected before any work is done.
status="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 \
    --form "image=@$photo" "http://127.0.0.1:$port/process?w=400")"
[[ "$status" == 401 ]] || show_logs_and_die "POST /process without a key returned $status, expected 401"

# 1600x1200 resized to w=400 keeps the 4:3 aspect, so the PNG is 400x300.
status="$(curl --silent --output "$work_dir/out.png" --write-out '%{http_code}' --max-time 60 \
    --header "x-api-key: $API_KEY" --form "image=@$photo" \
    "http://127.0.0.1:$port/process?w=400")"
[[ "$status" == 200 ]] ||
    show_logs_and_die "POST /process returned $status: $(head -c 300 "$work_dir/out.png")"
python3 - "$work_dir/out.png" <<'EOF' || show_logs_and_die "the reply is not a 400x300 PNG"
import struct
import sys

with open(sys.argv[1], "rb") as reply:
    data = reply.read()
if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
    sys.exit(f"not a PNG: first bytes {data[:16]!r}")
width, height = struct.unpack(">II", data[16:24])
if (width, height) != (400, 300):
    sys.exit(f"PNG is {width}x{height}, expected 400x300")
EOF
log "POST /process returned a 400x300 PNG ($(stat -c %s "$work_dir/out.png") bytes)"

# --- Graceful stop -----------------------------------------------------------

podman kill --signal TERM "$container_name" >/dev/null
exit_code="$(timeout 60 podman wait "$container_name")" ||
    show_logs_and_die "the container did not exit within 60 s of SIGTERM"
[[ "$exit_code" == 0 ]] || show_logs_and_die "the container exited with $exit_code after SIGTERM, expected 0"
log "SIGTERM: exit code 0"

echo "test-container: PASS (binary $binary_bytes B, image $image_bytes B uncompressed, $compressed_bytes B gzip)"
