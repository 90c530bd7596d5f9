#!/usr/bin/env bash
# Validates src/web/openapi.json and checks the running service against it.
#
# 1. openapi-spec-validator checks that the document is valid OpenAPI 3.1.
# 2. The release binary is started on a free port on 127.0.0.1 with a test
#    key, and schemathesis sends it generated requests for every operation,
#    checking each reply's status, media type, headers and JSON body against
#    the document. A generated multipart body is almost never a valid image,
#    so most /process replies are 4xx, and those must conform too.
#
# Both tools are pinned in scripts/openapi-requirements.txt and installed into
# a virtual environment under target/ on first use.
#
# Usage: scripts/test-openapi.sh
# OPENAPI_MAX_EXAMPLES (default 25) bounds the generated cases per operation;
# the whole schemathesis run is stopped after OPENAPI_TIME_LIMIT_SECS (150).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/target/openapi-venv"
requirements="$root/scripts/openapi-requirements.txt"
max_examples="${OPENAPI_MAX_EXAMPLES:-25}"
time_limit="${OPENAPI_TIME_LIMIT_SECS:-150}"
api_key="openapi-test-key-9d2e"
report_dir="$root/target/openapi-report"

# Reinstall when the pinned versions change.
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
    echo "test-openapi: installing $(tr '\n' ' ' <"$requirements")into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi

echo "test-openapi: validating src/web/openapi.json"
"$venv/bin/openapi-spec-validator" src/web/openapi.json

# IMGFLUX_BIN names a binary to test, such as the static one CI builds;
# without it the release build is used.
binary="${IMGFLUX_BIN:-}"
if [[ -z "$binary" ]]; then
    cargo build --release --locked --quiet
    binary=target/release/imgflux
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base_url="http://127.0.0.1:$port"
log_file="$root/target/openapi-server.log"

HOST=127.0.0.1 PORT="$port" API_KEYS="$api_key" RUST_LOG=error \
    IMGFLUX_SHUTDOWN_TIMEOUT_SECS=5 \
    "$binary" >"$log_file" 2>&1 &
server_pid=$!

stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" || true
    fi
}
trap stop_server EXIT

for _ in $(seq 1 100); do
    if curl --silent --fail --max-time 1 "$base_url/health" >/dev/null; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "test-openapi: imgflux exited at start-up:" >&2
        cat "$log_file" >&2
        exit 1
    fi
    sleep 0.1
done
curl --silent --fail --max-time 1 "$base_url/health" >/dev/null || {
    echo "test-openapi: imgflux did not return 200 for GET /health within 10 s" >&2
    exit 1
}

# The served document must be the file, since the server includes it as it is.
if ! curl --silent --fail "$base_url/openapi.json" | cmp -s - src/web/openapi.json; then
    echo "test-openapi: GET /openapi.json differs from src/web/openapi.json" >&2
    exit 1
fi

echo "test-openapi: running schemathesis against $base_url, $max_examples examples per operation"
status=0
# schemathesis keeps a cache of failures in .schemathesis/ under the current
# directory, so it runs from target/ to keep the work tree clean.
mkdir -p "$root/target/openapi-run"
cd "$root/target/openapi-run"
timeout --signal=INT --kill-after=10 "$time_limit" \
    "$venv/bin/schemathesis" run "$root/src/web/openapi.json" \
    --url "$base_url" \
    --header "x-api-key: $api_key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance,ignored_auth \
    --max-examples "$max_examples" \
    --seed 20261204 \
    --workers 1 \
    --request-timeout 15 \
    --generation-database none \
    --report junit --report-dir "$report_dir" \
    --no-color || status=$?

if [[ $status -eq 124 ]]; then
    echo "test-openapi: schemathesis did not finish within $time_limit s" >&2
fi
# The log level is error, so every line is a 5xx or a failure the server caught.
if [[ -s "$log_file" ]]; then
    echo "test-openapi: the server logged errors (target/openapi-server.log):"
    head -20 "$log_file"
fi
exit "$status"
