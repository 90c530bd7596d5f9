#!/usr/bin/env bash
# Runs the demo-page test (tests/browser) in headless Chromium against the
# release binary, installing what a clean Debian machine lacks first:
# Debian's chromium package, the pinned playwright-core from npm, and the
# release build.
#
# Usage: scripts/test-browser.sh
# IMGFLUX_UPDATE_SCREENSHOT=1 also refreshes docs/demo-page.png from the
# test's screenshot, reduced to a 256-colour palette with pngquant to keep the
# repository small.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ ! -x /usr/bin/chromium ]]; then
    echo "test-browser: installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "test-browser: installing Node.js and npm"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi

if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    echo "test-browser: installing playwright-core"
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

# The test runs IMGFLUX_BIN when it is set (CI passes the static binary);
# otherwise cargo rebuilds the release binary, quick when it is current.
if [[ -z "${IMGFLUX_BIN:-}" ]]; then
    cargo build --release --locked --quiet
fi

(cd tests/browser && node --test demo-page.test.js)

if [[ "${IMGFLUX_UPDATE_SCREENSHOT:-}" == "1" ]]; then
    if ! command -v pngquant >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pngquant
    fi
    mkdir -p docs
    pngquant --force --speed 1 --quality 50-80 --output docs/demo-page.png target/browser/demo-page.png
    echo "test-browser: wrote docs/demo-page.png ($(stat -c %s docs/demo-page.png) bytes)"
fi
