#!/usr/bin/env bash
# Computes the Content-Security-Policy of the demo page from its inline blocks.
#
# The page (src/web/index.html) has exactly one inline <style> and one inline
# <script>, and the policy allows each by the SHA-256 of its exact text. Any
# edit to either block changes its hash, so run this script after editing the
# page: it writes the policy to src/web/csp.txt, which the server sends as the
# Content-Security-Policy header of GET /.
#
# Usage: scripts/csp-hashes.sh          rewrite src/web/csp.txt
#        scripts/csp-hashes.sh --check  exit 1 if src/web/csp.txt is stale
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
page="$root/src/web/index.html"
policy_file="$root/src/web/csp.txt"

policy="$(python3 - "$page" <<'PYTHON'
import base64
import hashlib
import re
import sys

page = open(sys.argv[1], encoding="utf-8").read()


def inline_hash(tag):
    # A hash covers the exact characters between the tags, so the tags must
    # carry no attributes that would make a browser treat them differently.
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    if len(blocks) != 1 or len(re.findall(rf"<{tag}\b", page)) != 1:
        sys.exit(f"csp-hashes: expected exactly one plain <{tag}> block in {sys.argv[1]}")
    digest = hashlib.sha256(blocks[0].encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


directives = [
    "default-src 'none'",
    "script-src " + inline_hash("script"),
    "style-src " + inline_hash("style"),
    "img-src blob: data:",
    "connect-src 'self'",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
]
print("; ".join(directives), end="")
PYTHON
)"

if [[ "${1:-}" == "--check" ]]; then
    if [[ "$(cat "$policy_file" 2>/dev/null)" != "$policy" ]]; then
        echo "csp-hashes: $policy_file is stale; run scripts/csp-hashes.sh and commit it" >&2
        exit 1
    fi
    echo "csp-hashes: $policy_file matches the inline blocks of the page"
    exit 0
fi

# No trailing newline: the file is the header value as it is.
printf '%s' "$policy" >"$policy_file"
echo "csp-hashes: wrote $policy_file"
cat "$policy_file"
echo
