#!/usr/bin/env bash
# Runs every ImgFlux test on this machine, installing what a fresh machine lacks.
#
#   scripts/test.sh           everything: lint, unit and integration tests, the
#                             vendored tiny_http tests, the static build, the
#                             container, systemd and Kubernetes checks, the
#                             OpenAPI and browser tests, short fuzz and soak runs
#   scripts/test.sh --quick   lint, unit and integration tests only
#
# Needs the Rust toolchain (rustup) and root for apt-get on a fresh Debian
# machine. Each stage prints its name and time; the first failure stops the run.
set -euo pipefail

cd "$(dirname "$0")/.."
quick=false
[[ ${1:-} == --quick ]] && quick=true

stage() {
  local name=$1
  shift
  local started=$SECONDS
  echo "==> $name"
  "$@"
  echo "<== $name passed in $((SECONDS - started)) s"
}

stage "format" cargo fmt --all -- --check
stage "demo page CSP hashes" scripts/csp-hashes.sh --check
stage "clippy" cargo clippy --locked --all-targets -- -D warnings
stage "unit and integration tests" cargo test --locked
stage "vendored tiny_http tests" cargo test --locked --manifest-path vendor/tiny_http/Cargo.toml

if $quick; then
  exit 0
fi

run_if_present() {
  local script=$1
  shift
  if [[ -x $script ]]; then
    stage "$script" "$script" "$@"
  else
    echo "==> $script is missing" >&2
    exit 1
  fi
}

run_if_present scripts/build-static.sh
# Later stages test the static release binary that CI ships.
export IMGFLUX_BIN="$PWD/target/x86_64-unknown-linux-musl/release/imgflux"
export IMGFLUX_BINARY=$IMGFLUX_BIN
run_if_present scripts/test-container.sh
run_if_present scripts/test-deploy.sh
run_if_present scripts/test-systemd.sh
run_if_present scripts/test-openapi.sh
run_if_present scripts/test-browser.sh
run_if_present scripts/fuzz.sh --seconds 30
run_if_present scripts/soak.sh --short
echo "all test stages passed in $SECONDS s"
