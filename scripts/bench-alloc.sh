#!/usr/bin/env bash
# Compare imgflux binaries that differ only in their memory allocator under a
# short, bounded wrk load on 127.0.0.1.
#
# Usage: scripts/bench-alloc.sh NAME=BINARY [NAME=BINARY ...]
#   e.g. scripts/build-static.sh --out /tmp/imgflux-musl
#        # in a copy of the crate whose main.rs sets mimalloc as #[global_allocator]:
#        scripts/build-static.sh --out /tmp/imgflux-mimalloc
#        scripts/bench-alloc.sh musl=/tmp/imgflux-musl mimalloc=/tmp/imgflux-mimalloc
#
# Settings (environment):
#   ALLOC_BENCH_ROUNDS       rounds; each runs every binary once per workload (default: 3)
#   ALLOC_BENCH_DURATION     measured seconds per run (default: 10)
#   ALLOC_BENCH_CONNECTIONS  wrk connections, and so concurrent requests (default: 4)
#   ALLOC_BENCH_WORKERS      IMGFLUX_WORKERS for the server (default: 4)
#
# Binaries alternate within each round, so a burst of outside load affects all
# of them instead of one binary's whole series. For each binary and workload
# the script prints the median over the rounds of requests per second, of p50
# and p99 latency and of the server's CPU time per request, and the largest
# peak RSS (VmHWM) of the server. CPU time per request is the server's CPU time
# from idle to idle around the measured run, divided by the /process requests
# it answered with 200 (from /metrics); it depends less on other load on the
# machine than throughput does.
set -euo pipefail

readonly ROUNDS="${ALLOC_BENCH_ROUNDS:-3}"
readonly DURATION="${ALLOC_BENCH_DURATION:-10}"
readonly CONNECTIONS="${ALLOC_BENCH_CONNECTIONS:-4}"
readonly WORKERS="${ALLOC_BENCH_WORKERS:-4}"
readonly API_KEY=alloc-bench-key

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
images="$repo_root/../shared/bench-images"

die() {
    echo "bench-alloc: error: $*" >&2
    exit 1
}

[[ $# -ge 1 ]] || die "no binaries given; usage: scripts/bench-alloc.sh NAME=BINARY [NAME=BINARY ...]"
command -v wrk >/dev/null || die "wrk not found; install it with apt-get install wrk"
[[ -d "$images" ]] || die "benchmark images not found in $images"

names=()
declare -A binaries
for argument in "$@"; do
    [[ "$argument" == *=* ]] || die "'$argument' is not NAME=BINARY"
    name="${argument%%=*}"
    binaries[$name]="${argument#*=}"
    [[ -x "${binaries[$name]}" ]] || die "binary '${binaries[$name]}' for $name is not executable"
    names+=("$name")
done

# Workloads: name, image, query. The small icon makes allocation a larger
# share of each request than the photos do.
workloads=(
    "photo-2mp|photo-2mp-1600x1200.jpg|w=800"
    "photo-12mp|photo-12mp-4032x3024.jpg|w=1024&format=jpeg"
    "icon|icon-256x256.png|w=64"
)

work_dir="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work_dir"
}
trap cleanup EXIT

# Build one multipart/form-data body per workload, sent unchanged by wrk.
for workload in "${workloads[@]}"; do
    IFS='|' read -r workload_name image _ <<<"$workload"
    python3 - "$images/$image" "$work_dir/$workload_name.body" <<'EOF'
import sys

image_path, body_path = sys.argv[1], sys.argv[2]
with open(image_path, "rb") as image:
    data = image.read()
head = (
    b"--imgfluxbench\r\n"
    b'Content-Disposition: form-data; name="image"; filename="input"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)
with open(body_path, "wb") as body:
    body.write(head + data + b"\r\n--imgfluxbench--\r\n")
EOF
done

cat >"$work_dir/post.lua" <<'EOF'
local file = assert(io.open(os.getenv("ALLOC_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary=imgfluxbench"
wrk.headers["x-api-key"] = os.getenv("ALLOC_BENCH_KEY")


function done(summary, latency, requests)
    io.write(string.format("result requests=%d rps=%.2f p50_ms=%.1f p99_ms=%.1f errors=%d\n",
        summary.requests, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.status + summary.errors.connect + summary.errors.read
            + summary.errors.write + summary.errors.timeout))
end
EOF

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {
    local binary="$1"
    local port="$2"
    HOST=127.0.0.1 PORT="$port" API_KEYS="$API_KEY" IMGFLUX_WORKERS="$WORKERS" RUST_LOG=warn \
        "$binary" 2>>"$work_dir/server.log" &
    server_pid=$!
    for _ in $(seq 1 100); do
        curl --silent --fail --max-time 1 "http://127.0.0.1:$port/health" >/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || die "$binary exited at start-up: $(tail -n 5 "$work_dir/server.log")"
        sleep 0.1
    done
    die "$binary did not return 200 for /health within 10 s"
}

# User plus system CPU time of a process, in clock ticks. The fields after the
# command name in /proc/PID/stat start at field 3, so utime and stime are the
# 12th and 13th of them.
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat")"
    awk '{print $12 + $13}' <<<"${stat##*) }"
}

# Waits until the server has used no CPU for two polls in a row, so requests
# still running after wrk stops are finished before a CPU reading.
wait_until_idle() {
    local previous current
    previous="$(cpu_ticks "$1")"
    for _ in $(seq 1 300); do
        sleep 0.3
        current="$(cpu_ticks "$1")"
        if [[ "$current" == "$previous" ]]; then
            sleep 0.3
            [[ "$(cpu_ticks "$1")" == "$current" ]] && return 0
        fi
        previous="$current"
    done
    die "the server on pid $1 did not become idle within 90 s"
}

# Number of /process requests for which the server has returned 200.
processed_requests() {
    curl --silent --fail --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk '/^imgflux_requests_total\{route="process",status="200"\}/ {print $2; found = 1}
             END {if (!found) print 0}'
}

stop_server() {
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=""
}

results="$work_dir/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for workload in "${workloads[@]}"; do
        IFS='|' read -r workload_name _ query <<<"$workload"
        for name in "${names[@]}"; do
            port="$(free_port)"
            start_server "${binaries[$name]}" "$port"
            url="http://127.0.0.1:$port/process?$query"
            export ALLOC_BENCH_BODY="$work_dir/$workload_name.body" ALLOC_BENCH_KEY="$API_KEY"
            # One unmeasured second warms up the worker threads and the heap.
            wrk --threads 2 --connections "$CONNECTIONS" --duration 1s --timeout 30s \
                --script "$work_dir/post.lua" "$url" >/dev/null
            wait_until_idle "$server_pid"
            cpu_ticks_before="$(cpu_ticks "$server_pid")"
            processed_before="$(processed_requests "$port")"
            line="$(wrk --threads 2 --connections "$CONNECTIONS" --duration "${DURATION}s" --timeout 30s \
                --script "$work_dir/post.lua" "$url" | grep '^result ')" ||
                die "wrk printed no result for $name on $workload_name"
            wait_until_idle "$server_pid"
            cpu_ticks_used=$(($(cpu_ticks "$server_pid") - cpu_ticks_before))
            processed=$(($(processed_requests "$port") - processed_before))
            peak_rss_kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")"
            stop_server
            [[ "$line" == *" errors=0" ]] || die "$name on $workload_name had failed requests: $line"
            echo "bench-alloc: round $round $workload_name $name: ${line#result } processed=$processed cpu_ticks=$cpu_ticks_used peak_rss_kib=$peak_rss_kib" >&2
            printf '%s\t%s\t%s processed=%s cpu_ticks=%s peak_rss_kib=%s\n' "$workload_name" "$name" \
                "${line#result }" "$processed" "$cpu_ticks_used" "$peak_rss_kib" >>"$results"
        done
    done
done

echo
echo "wrk: $CONNECTIONS connections, ${DURATION} s per run, $ROUNDS rounds, IMGFLUX_WORKERS=$WORKERS, $(nproc) cores"
python3 - "$results" "$(getconf CLK_TCK)" <<'EOF'
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
order = []
with open(sys.argv[1]) as results:
    for line in results:
        workload, name, fields = line.rstrip("\n").split("\t")
        values = dict(field.split("=") for field in fields.split())
        if (workload, name) not in runs:
            order.append((workload, name))
        runs[(workload, name)].append(values)

ticks_per_second = int(sys.argv[2])
print("| workload | allocator | req/s | p50 ms | p99 ms | CPU ms/request | peak RSS MiB |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for workload, name in order:
    values = runs[(workload, name)]
    rps = statistics.median(float(v["rps"]) for v in values)
    p50 = statistics.median(float(v["p50_ms"]) for v in values)
    p99 = statistics.median(float(v["p99_ms"]) for v in values)
    cpu_ms = statistics.median(
        1000 * int(v["cpu_ticks"]) / ticks_per_second / max(int(v["processed"]), 1) for v in values
    )
    rss = max(int(v["peak_rss_kib"]) for v in values) / 1024
    print(f"| {workload} | {name} | {rps:.1f} | {p50:.1f} | {p99:.1f} | {cpu_ms:.1f} | {rss:.0f} |")
EOF
