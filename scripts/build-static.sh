#!/usr/bin/env bash
# Build a fully static, stripped x86_64-unknown-linux-musl release binary of
# imgflux, check that it is static and runs in an empty root, and print its
# size.
#
# Usage: scripts/build-static.sh [--out PATH] [-- EXTRA CARGO ARGS]
#   --out PATH   also copy the binary to PATH
#   Extra arguments after `--` go to `cargo build`, e.g. `-- --verbose`.
#
# On a Debian machine that has only rustup's toolchain, the script installs
# what is missing: the musl target (rustup) and musl-tools, file, binutils
# and nasm (apt-get, which needs root). It honours CARGO_TARGET_DIR.
set -euo pipefail

readonly TARGET=x86_64-unknown-linux-musl

die() {
    echo "build-static: error: $*" >&2
    exit 1
}

log() {
    echo "build-static: $*" >&2
}

out_path=""
cargo_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out)
            [[ $# -ge 2 ]] || die "--out needs a path"
            out_path="$2"
            shift 2
            ;;
        --)
            shift
            cargo_args=("$@")
            break
            ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            die "unknown argument '$1' (see --help)"
            ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Install the Debian packages whose commands are missing. apt-get update runs
# only when something has to be installed.
install_missing_packages() {
    local missing=()
    command -v musl-gcc >/dev/null || missing+=(musl-tools)
    command -v file >/dev/null || missing+=(file)
    command -v readelf >/dev/null || missing+=(binutils)
    command -v strip >/dev/null || missing+=(binutils)
    # mozjpeg-sys assembles libjpeg-turbo's SIMD code with nasm and silently
    # builds the slower plain C code without it.
    command -v nasm >/dev/null || missing+=(nasm)
    [[ ${#missing[@]} -eq 0 ]] && return 0

    [[ $EUID -eq 0 ]] || die "missing packages ${missing[*]}; run as root or install them"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

install_missing_target() {
    if ! rustup target list --installed | grep -qx "$TARGET"; then
        log "adding rustup target $TARGET"
        rustup target add "$TARGET"
    fi
}

install_missing_packages
install_missing_target

# C code that -sys crates compile (for example libwebp) must be built against
# musl's headers and libc, not glibc's.
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
# Strip symbols at link time; this touches only this build, not Cargo.toml.
export CARGO_PROFILE_RELEASE_STRIP="${CARGO_PROFILE_RELEASE_STRIP:-symbols}"

log "cargo build --release --locked --target $TARGET ${cargo_args[*]:-}"
cargo build --release --locked --target "$TARGET" --bin imgflux "${cargo_args[@]}"

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
binary="$target_dir/$TARGET/release/imgflux"
[[ -x "$binary" ]] || die "cargo finished but $binary does not exist"

# `file` prints "statically linked" or, for a static PIE, "static-pie linked".
file_output="$(file -b "$binary")"
log "file: $file_output"
[[ "$file_output" == *ELF\ 64-bit*x86-64* ]] || die "$binary is not an x86-64 ELF executable"
[[ "$file_output" == *static* ]] || die "$binary is not statically linked: $file_output"
[[ "$file_output" != *"not stripped"* ]] || die "$binary is not stripped: $file_output"

# A static binary has no interpreter and no DT_NEEDED entries. glibc's ldd
# prints "not a dynamic executable" or "statically linked" for it and may exit
# non-zero, so its exit status is not used.
if readelf --program-headers "$binary" | grep -q INTERP; then
    die "$binary has a program interpreter, so it is dynamically linked"
fi
if readelf --dynamic "$binary" | grep -q NEEDED; then
    die "$binary needs shared libraries: $(readelf --dynamic "$binary" | grep NEEDED)"
fi
ldd_output="$(ldd "$binary" 2>&1 || true)"
log "ldd: $ldd_output"
case "$ldd_output" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "ldd lists shared libraries for $binary: $ldd_output" ;;
esac

# Run the binary from a root that contains nothing else, which proves that it
# needs no loader, shared library or file from the build machine.
empty_root="$(mktemp -d)"
trap 'rm -rf "$empty_root"' EXIT
cp "$binary" "$empty_root/imgflux"
if [[ $EUID -eq 0 ]]; then
    version_output="$(chroot "$empty_root" /imgflux --version)" ||
        die "'/imgflux --version' failed in an empty chroot"
else
    version_output="$(unshare --map-root-user --root "$empty_root" /imgflux --version)" ||
        die "'/imgflux --version' failed in an empty root"
fi
[[ "$version_output" == imgflux* ]] ||
    die "'imgflux --version' printed '$version_output', expected 'imgflux VERSION'"
log "runs in an empty root: $version_output"

if [[ -n "$out_path" ]]; then
    cp "$binary" "$out_path"
    binary="$out_path"
fi

size_bytes="$(stat -c %s "$binary")"
log "binary: $binary"
echo "size: $size_bytes bytes ($(numfmt --to=iec-i --suffix=B "$size_bytes"))"
