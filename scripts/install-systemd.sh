#!/usr/bin/env bash
# Install imgflux as a systemd service.
#
# Usage: scripts/install-systemd.sh [--binary PATH] [--destdir DIR] [--dry-run]
#   --binary PATH  binary to install (default: the static build from
#                  scripts/build-static.sh, then target/release/imgflux)
#   --destdir DIR  install below DIR instead of / and skip systemctl; the
#                  DESTDIR environment variable does the same
#   --dry-run      print the commands instead of running them
#
# Installs:
#   /usr/local/bin/imgflux                    the binary, mode 0755
#   /etc/systemd/system/imgflux.service       the unit, mode 0644
#   /etc/imgflux/imgflux.env.example          every setting with its default
#   /etc/imgflux/imgflux.env                  a copy of the example, mode 0600,
#                                             only if the file does not exist
# Then, without a destination folder and with systemd running, it reloads
# systemd and restarts the service if it was running.
set -euo pipefail

die() {
    echo "install-systemd: error: $*" >&2
    exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
destdir="${DESTDIR:-}"
binary=""
dry_run=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary)
            [[ $# -ge 2 ]] || die "--binary needs a path"
            binary="$2"
            shift 2
            ;;
        --destdir)
            [[ $# -ge 2 ]] || die "--destdir needs a folder"
            destdir="$2"
            shift 2
            ;;
        --dry-run)
            dry_run=1
            shift
            ;;
        -h | --help)
            sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            die "unknown argument '$1' (see --help)"
            ;;
    esac
done

if [[ -z "$binary" ]]; then
    target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
    for candidate in "$target_dir/x86_64-unknown-linux-musl/release/imgflux" \
        "$target_dir/release/imgflux"; do
        if [[ -x "$candidate" ]]; then
            binary="$candidate"
            break
        fi
    done
    [[ -n "$binary" ]] || die "no built binary found; run scripts/build-static.sh or pass --binary PATH"
fi
[[ -f "$binary" && -x "$binary" ]] || die "binary '$binary' is not an executable file"

unit="$repo_root/deploy/systemd/imgflux.service"
env_example="$repo_root/deploy/systemd/imgflux.env.example"
[[ -f "$unit" ]] || die "unit file not found at $unit"
[[ -f "$env_example" ]] || die "settings example not found at $env_example"

if [[ -n "$destdir" ]]; then
    destdir="$(realpath -m "$destdir")"
elif [[ $dry_run -eq 0 && $EUID -ne 0 ]]; then
    die "installing to / needs root; use sudo, --destdir DIR or --dry-run"
fi

# Print each command, then run it unless this is a dry run.
run() {
    echo "+ $*"
    if [[ $dry_run -eq 0 ]]; then
        "$@"
    fi
}

run install -D -m 0755 "$binary" "$destdir/usr/local/bin/imgflux"
run install -D -m 0644 "$unit" "$destdir/etc/systemd/system/imgflux.service"
run install -d -m 0755 "$destdir/etc/imgflux"
run install -m 0644 "$env_example" "$destdir/etc/imgflux/imgflux.env.example"
# The settings file may hold API keys, so only root reads it. An existing
# file is never replaced.
if [[ -e "$destdir/etc/imgflux/imgflux.env" ]]; then
    echo "keeping existing $destdir/etc/imgflux/imgflux.env"
else
    run install -m 0600 "$env_example" "$destdir/etc/imgflux/imgflux.env"
fi

if [[ -n "$destdir" ]]; then
    echo "installed below $destdir; systemd was not touched"
    exit 0
fi
if [[ ! -d /run/systemd/system ]]; then
    echo "systemd is not running here; the unit is installed but not loaded"
    exit 0
fi

run systemctl daemon-reload
if systemctl is-active --quiet imgflux.service; then
    run systemctl restart imgflux.service
else
    echo "set API_KEYS in /etc/imgflux/imgflux.env, then run: systemctl enable --now imgflux"
fi
