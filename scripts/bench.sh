#!/usr/bin/env bash
# Benchmark ImgFlux side by side with two servers that speak the same
# /process contract: sharp (libvips, Node.js) and Pillow (Python, gunicorn).
#
# Usage: scripts/bench.sh [--quick]
#
# Exit status: 0 when every server passed the contract check, 3 when one
# failed it (the report is written all the same), 1 on any other error.
#
# For every workload and connection count, each server gets a warm-up and then
# a measured wrk run that POSTs a prebuilt multipart body. The script prints a
# Markdown report and writes it to $BENCH_OUT_DIR/results.md. All servers run
# on 127.0.0.1 and are stopped by PID when the script exits.
#
# Settings (environment):
#   BENCH_SERVERS        servers to run, from "imgflux sharp pillow" (default: all three)
#   BENCH_WORKLOADS      workloads to run, from "a b c d" (default: all four)
#   BENCH_CONCURRENCIES  wrk connection counts (default: "1 4 16")
#   BENCH_DURATION       measured seconds per cell (default: 10, or 2 with --quick)
#   BENCH_WARMUP         unmeasured warm-up seconds per cell, 0 for none (default: 2, or 1 with --quick)
#   BENCH_RESTART        "workload" restarts every server before each workload, so peak RSS
#                        does not carry over from earlier workloads; "never" keeps them up (default: workload)
#   BENCH_PORT_BASE      first port; imgflux, sharp and pillow use it and the next two (default: 3100)
#   BENCH_OUT_DIR        report, records, logs and replies (default: target/bench)
#   BENCH_SHARED_DIR     folder with bench-images/ and corpus/ (default: ../shared beside the repository)
#   BENCH_NICE           nice value for the servers and wrk (default: -10 as root, else 0). Each runs
#                        in its own session, so with scheduler autogroups this also sets its
#                        autogroup's nice, and compiles in other sessions take less CPU time from it
#   IMGFLUX_BIN          imgflux binary to run; without it the script runs cargo build --release
# The servers inherit the rest of the environment, so IMGFLUX_* settings,
# RUST_LOG, PILLOW_WORKERS, PILLOW_THREADS and UV_THREADPOOL_SIZE apply.
#
# Workloads:
#   a  photo-2mp-1600x1200.jpg   w=800                    (PNG)
#   b  photo-2mp-1600x1200.jpg   w=800&format=jpeg&q=80
#   c  icon-256x256.png          w=64                     (PNG)
#   d  photo-12mp-4032x3024.jpg  w=1024&format=jpeg       (default quality 80)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$ROOT/benches/harness
PEERS=$ROOT/benches/peers
COMMAND_LINE="scripts/bench.sh${*:+ $*}"

QUICK=0
for argument in "$@"; do
  case $argument in
    --quick) QUICK=1 ;;
    -h | --help)
      sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "bench: unknown argument '$argument' (scripts/bench.sh --help lists the options)" >&2
      exit 2
      ;;
  esac
done

if ((QUICK)); then
  DEFAULT_DURATION=2 DEFAULT_WARMUP=1
else
  DEFAULT_DURATION=10 DEFAULT_WARMUP=2
fi
SERVERS=(${BENCH_SERVERS:-imgflux sharp pillow})
WORKLOADS=(${BENCH_WORKLOADS:-a b c d})
CONCURRENCIES=(${BENCH_CONCURRENCIES:-1 4 16})
DURATION=${BENCH_DURATION:-$DEFAULT_DURATION}
WARMUP=${BENCH_WARMUP:-$DEFAULT_WARMUP}
RESTART=${BENCH_RESTART:-workload}
if ((EUID == 0)); then DEFAULT_NICE=-10; else DEFAULT_NICE=0; fi
NICE=${BENCH_NICE:-$DEFAULT_NICE}
PORT_BASE=${BENCH_PORT_BASE:-3100}
# Absolute, because the peers start in their own folders.
OUT_DIR=$(realpath -m "${BENCH_OUT_DIR:-$ROOT/target/bench}")
SHARED_DIR=$(realpath -m "${BENCH_SHARED_DIR:-$ROOT/../shared}")
IMAGES=$SHARED_DIR/bench-images
CORPUS=$SHARED_DIR/corpus
VENV=$OUT_DIR/venv
RECORDS=$OUT_DIR/records.tsv
API_KEY=bench_key_$RANDOM$RANDOM
BOUNDARY=imgfluxbench7f3a9c2e51d8
# wrk counts a request as timed out after this long. It is generous because
# the 12 MP workload can queue for several seconds at 16 connections.
WRK_TIMEOUT=30s

declare -A WORKLOAD_IMAGE=(
  [a]=photo-2mp-1600x1200.jpg [b]=photo-2mp-1600x1200.jpg
  [c]=icon-256x256.png [d]=photo-12mp-4032x3024.jpg
)
declare -A WORKLOAD_QUERY=(
  [a]="w=800" [b]="w=800&format=jpeg&q=80" [c]="w=64" [d]="w=1024&format=jpeg"
)
declare -A SERVER_PORT=([imgflux]=$PORT_BASE [sharp]=$((PORT_BASE + 1)) [pillow]=$((PORT_BASE + 2)))
declare -A SERVER_PID=()
declare -A SERVER_VERSION=()
SAMPLER_PID=""
IMGFLUX=""
FAILED_CHECKS=()

log() { echo "bench: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

validate_settings() {
  local server workload concurrency
  for server in "${SERVERS[@]}"; do
    [[ -n ${SERVER_PORT[$server]:-} ]] || die "BENCH_SERVERS: unknown server '$server'; expected imgflux, sharp or pillow"
  done
  for workload in "${WORKLOADS[@]}"; do
    [[ -n ${WORKLOAD_QUERY[$workload]:-} ]] || die "BENCH_WORKLOADS: unknown workload '$workload'; expected a, b, c or d"
  done
  for concurrency in "${CONCURRENCIES[@]}"; do
    [[ $concurrency =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONCURRENCIES: '$concurrency' is not a positive integer"
  done
  [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION: '$DURATION' is not a positive whole number of seconds"
  [[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP: '$WARMUP' is not a whole number of seconds"
  [[ $NICE =~ ^-?[0-9]+$ ]] || die "BENCH_NICE: '$NICE' is not an integer from -20 to 19"
  [[ $RESTART == workload || $RESTART == never ]] || die "BENCH_RESTART: '$RESTART' is not workload or never"
  [[ -d $IMAGES ]] || die "benchmark images not found in $IMAGES; set BENCH_SHARED_DIR"
  ((${#SERVERS[@]} > 0)) || die "BENCH_SERVERS is empty"
}

# ---------------------------------------------------------------------------
# Installing what the run needs

install_wrk() {
  command -v wrk >/dev/null && return
  log "wrk not found; installing Debian's wrk package"
  ((EUID == 0)) || die "wrk is missing and installing it needs root: run apt-get install wrk"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
}

prepare_sharp() {
  command -v node >/dev/null || die "node not found; the sharp peer needs Node.js 20.9 or later"
  local dir=$PEERS/sharp
  # npm writes node_modules/.package-lock.json on every install, so a lock
  # file newer than it means the dependencies changed.
  if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    log "installing the sharp peer's npm packages"
    (cd "$dir" && npm ci --no-audit --no-fund >&2)
  fi
  SERVER_VERSION[sharp]=$(cd "$dir" && node -p \
    "const s = require('sharp'); 'sharp ' + s.versions.sharp + ', libvips ' + s.versions.vips + ', Node.js ' + process.versions.node")
}

prepare_venv() {
  # The contract check needs Pillow even when the Pillow peer is not run.
  local requirements=$PEERS/pillow/requirements.txt
  if [[ ! -x $VENV/bin/python ]] || ! cmp -s "$requirements" "$VENV/installed-requirements.txt"; then
    log "creating the Python virtual environment in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$VENV/installed-requirements.txt"
  fi
  SERVER_VERSION[pillow]=$("$VENV/bin/python" -c \
    "import sys, PIL, gunicorn; print(f'Pillow {PIL.__version__}, gunicorn {gunicorn.__version__}, Python {sys.version.split()[0]}')")
}

prepare_imgflux() {
  if [[ -n ${IMGFLUX_BIN:-} ]]; then
    IMGFLUX=$(realpath "$IMGFLUX_BIN")
  else
    log "building imgflux in release mode"
    (cd "$ROOT" && cargo build --release --bin imgflux >&2) || die "cargo build --release failed"
    IMGFLUX=${CARGO_TARGET_DIR:-$ROOT/target}/release/imgflux
  fi
  [[ -x $IMGFLUX ]] || die "imgflux binary $IMGFLUX is not executable"
  SERVER_VERSION[imgflux]=$("$IMGFLUX" --version 2>/dev/null | head -n 1 || echo "unknown version")
}

build_bodies() {
  local workload
  mkdir -p "$OUT_DIR/bodies"
  for workload in "${WORKLOADS[@]}"; do
    {
      printf -- '--%s\r\nContent-Disposition: form-data; name="image"; filename="%s"\r\n' "$BOUNDARY" "${WORKLOAD_IMAGE[$workload]}"
      printf 'Content-Type: application/octet-stream\r\n\r\n'
      cat "$IMAGES/${WORKLOAD_IMAGE[$workload]}"
      printf -- '\r\n--%s--\r\n' "$BOUNDARY"
    } >"$OUT_DIR/bodies/$workload.body"
  done
}

# ---------------------------------------------------------------------------
# Starting and stopping servers

# Sends GET /health over bash's /dev/tcp, so a poll costs no process start.
probe_health() {
  local port=$1 fd status_line=""
  { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&"$fd"
  IFS= read -r -t 5 status_line <&"$fd" || true
  exec {fd}>&-
  [[ $status_line == "HTTP/1."[01]" 200"* ]]
}

port_in_use() {
  local fd
  { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  exec {fd}>&-
}

launch_server() {
  local server=$1 port=$2
  case $server in
    imgflux)
      HOST=127.0.0.1 PORT=$port API_KEYS=$API_KEY RUST_LOG=${RUST_LOG:-info} exec setsid nice -n "$NICE" "$IMGFLUX"
      ;;
    sharp)
      cd "$PEERS/sharp" && HOST=127.0.0.1 PORT=$port API_KEYS=$API_KEY exec setsid nice -n "$NICE" node server.js
      ;;
    pillow)
      cd "$PEERS/pillow" && HOST=127.0.0.1 PORT=$port API_KEYS=$API_KEY \
        exec setsid nice -n "$NICE" "$VENV/bin/gunicorn" -c gunicorn.conf.py server:app
      ;;
  esac
}

# Starts a server, times start to the first 200 from /health and records its
# idle RSS before it has served a request.
start_server() {
  local server=$1 port=${SERVER_PORT[$1]} pid started now elapsed_us idle_rss_kib
  ! port_in_use "$port" || die "port $port is already in use; stop that server or set BENCH_PORT_BASE"

  started=$EPOCHREALTIME
  (launch_server "$server" "$port") >>"$OUT_DIR/logs/$server.log" 2>&1 &
  pid=$!
  SERVER_PID[$server]=$pid
  raise_autogroup "$pid"
  until probe_health "$port"; do
    kill -0 "$pid" 2>/dev/null || die "$server exited during start-up; see $OUT_DIR/logs/$server.log"
    now=$EPOCHREALTIME
    ((${now/./} - ${started/./} < 60000000)) || die "$server did not return 200 from /health within 60 s"
    read -r -t 0.002 -u "$SLEEP_FD" _ || true
  done
  now=$EPOCHREALTIME
  elapsed_us=$((${now/./} - ${started/./}))

  # Let lazy start-up work (worker forks, first allocations) settle first.
  sleep 1
  idle_rss_kib=$(python3 "$HARNESS/benchtool.py" rss --pid "$pid")
  record start server="$server" pid="$pid" command="$(cat "/proc/$pid/comm")" startup_ms="$((elapsed_us / 1000)).$(((elapsed_us % 1000) / 100))" \
    idle_rss_kib="$idle_rss_kib" version="${SERVER_VERSION[$server]}"
  log "$server started in $((elapsed_us / 1000)) ms (PID $pid, idle RSS $((idle_rss_kib / 1024)) MiB)"
}

start_servers() {
  local server
  for server in "${SERVERS[@]}"; do
    start_server "$server"
  done
}

stop_servers() {
  local server pid waited
  if [[ -n $SAMPLER_PID ]]; then
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
  fi
  for server in "${!SERVER_PID[@]}"; do
    pid=${SERVER_PID[$server]}
    kill -TERM "$pid" 2>/dev/null || continue
    for ((waited = 0; waited < 100; waited++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$server (PID $pid) still runs 10 s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PID=()
}

# ---------------------------------------------------------------------------
# Measuring

# Appends one tab-separated record: the kind, then key=value fields.
record() {
  local IFS=$'\t'
  echo "$*" >>"$RECORDS"
}

check_server() {
  local server=$1 output result
  if output=$("$VENV/bin/python" "$HARNESS/benchtool.py" check --url "http://127.0.0.1:${SERVER_PORT[$server]}" \
    --key "$API_KEY" --images "$IMAGES" --corpus "$CORPUS" 2>&1); then
    result="passed"
  else
    result="FAILED: $(echo "$output" | head -n 3 | tr '\n\t' '  ')"
    FAILED_CHECKS+=("$server")
    log "$server failed the contract check:"
    echo "$output" >&2
  fi
  echo "$output" >"$OUT_DIR/logs/check-$server.txt"
  record check server="$server" result="$result"
}

# Saves one reply per server and workload and records its size, a description
# and the stage timings of servers that send Server-Timing (ImgFlux does).
save_reply() {
  local server=$1 workload=$2 file status timing
  file=$OUT_DIR/replies/$server-$workload
  status=$(curl -s -o "$file" -D "$file.headers" -w '%{http_code}' --max-time 60 \
    -H "x-api-key: $API_KEY" -H "Content-Type: multipart/form-data; boundary=$BOUNDARY" \
    --data-binary "@$OUT_DIR/bodies/$workload.body" \
    "http://127.0.0.1:${SERVER_PORT[$server]}/process?${WORKLOAD_QUERY[$workload]}")
  timing=$(sed -n 's/^[Ss]erver-[Tt]iming: *//p' "$file.headers" | tr -d '\r')
  if [[ $status == 200 ]]; then
    record reply server="$server" workload="$workload" bytes="$(stat -c %s "$file")" \
      description="$(python3 "$HARNESS/benchtool.py" describe "$file")" timing="$timing"
  else
    record reply server="$server" workload="$workload" bytes="$(stat -c %s "$file")" description="status $status"
  fi
}

# Sets the nice value of a process's scheduler autogroup when the process
# leads its own session. Under autogroups (kernel.sched_autogroup_enabled),
# CPU time is shared between sessions first, so a process's own nice value
# does not count against processes of other sessions.
raise_autogroup() {
  local pid=$1
  [[ -w /proc/$pid/autogroup ]] || return 0
  [[ $(cut -d' ' -f1 "/proc/$pid/autogroup") != $(cut -d' ' -f1 /proc/$$/autogroup) ]] || return 0
  echo "$NICE" >"/proc/$pid/autogroup" 2>/dev/null || true
}

run_wrk() {
  local server=$1 workload=$2 concurrency=$3 seconds=$4 pid
  BENCH_BODY_FILE=$OUT_DIR/bodies/$workload.body BENCH_BOUNDARY=$BOUNDARY BENCH_API_KEY=$API_KEY \
    setsid nice -n "$NICE" wrk -t1 -c"$concurrency" -d"${seconds}s" --timeout "$WRK_TIMEOUT" \
    -s "$HARNESS/post_body.lua" "http://127.0.0.1:${SERVER_PORT[$server]}/process?${WORKLOAD_QUERY[$workload]}" &
  pid=$!
  raise_autogroup "$pid"
  wait "$pid"
}

# Runs one warm-up and one measured wrk run while sampling the server's RSS.
run_cell() {
  local server=$1 workload=$2 concurrency=$3 sampler_fd ready wrk_output wrk_line sample_line
  if ((WARMUP > 0)); then
    run_wrk "$server" "$workload" "$concurrency" "$WARMUP" >/dev/null
  fi
  # wrk closes its connections when the warm-up ends, but the server may
  # still be working on the requests they carried.
  python3 "$HARNESS/benchtool.py" wait-idle --pid "${SERVER_PID[$server]}" ||
    log "$server is still busy before the measured run of $workload at $concurrency connections"

  exec {sampler_fd}< <(exec python3 "$HARNESS/benchtool.py" sample --pid "${SERVER_PID[$server]}")
  SAMPLER_PID=$!
  read -r -u "$sampler_fd" ready
  [[ $ready == ready ]] || die "the RSS sampler did not start"
  wrk_output=$(run_wrk "$server" "$workload" "$concurrency" "$DURATION")
  kill -TERM "$SAMPLER_PID"
  read -r -u "$sampler_fd" sample_line
  exec {sampler_fd}<&-
  SAMPLER_PID=""

  wrk_line=$(grep '^wrk ' <<<"$wrk_output") || die "wrk printed no summary for $server/$workload/$concurrency: $wrk_output"
  record cell server="$server" workload="$workload" concurrency="$concurrency" ${wrk_line#wrk } $sample_line
  log "$(tail -n 1 "$RECORDS" | tr '\t' ' ')"
}

count_compilers() {
  local count=0 comm
  for comm in /proc/[0-9]*/comm; do
    case $(cat "$comm" 2>/dev/null) in
      rustc | cc1 | cc1plus | cargo | ld | ld.lld | gcc) count=$((count + 1)) ;;
    esac
  done
  echo "$count"
}

write_header() {
  local started=$1 load_start=$2 compilers_start=$3 commit
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  cat >"$OUT_DIR/header.md" <<EOF
## Run of $started

- Command: \`BENCH_SERVERS="${SERVERS[*]}" BENCH_WORKLOADS="${WORKLOADS[*]}" BENCH_CONCURRENCIES="${CONCURRENCIES[*]}" BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_RESTART=$RESTART $COMMAND_LINE\`
- Repository commit: \`$commit\`; imgflux binary: \`${IMGFLUX:-not run}\`
- Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB memory, Linux $(uname -r)
- Load: wrk 1 thread, ${DURATION} s measured after ${WARMUP} s of warm-up per cell, keep-alive connections, timeout $WRK_TIMEOUT; servers restarted before each workload: $([[ $RESTART == workload ]] && echo yes || echo no); servers and wrk run at nice $NICE
- Load average at start / end: $load_start / $(cut -d' ' -f1-3 /proc/loadavg)
- Compiler processes (rustc, cc1, ld, cargo) running at start / end: $compilers_start / $(count_compilers)
- "ok req/s" counts 2xx replies only. "other CPU %" is the machine's busy time outside the server during the cell, as a share of all CPUs. It includes wrk and the sampler, so values far above 10 % mean other processes ran too, and they also take whatever CPU time the server leaves idle.
- Peak RSS is the highest sum of VmRSS over the server's process tree, sampled every 100 ms; for gunicorn this counts pages shared between the master and its workers once per process.
EOF
}

main() {
  local started load_start compilers_start server workload concurrency
  validate_settings
  mkdir -p "$OUT_DIR/logs" "$OUT_DIR/replies"
  rm -f "$OUT_DIR"/logs/*.log
  : >"$RECORDS"
  exec {SLEEP_FD}<> <(:)
  trap stop_servers EXIT
  trap 'exit 130' INT TERM

  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  load_start=$(cut -d' ' -f1-3 /proc/loadavg)
  compilers_start=$(count_compilers)

  install_wrk
  prepare_venv
  for server in "${SERVERS[@]}"; do
    case $server in
      imgflux) prepare_imgflux ;;
      sharp) prepare_sharp ;;
    esac
  done
  build_bodies

  start_servers
  for server in "${SERVERS[@]}"; do
    check_server "$server"
    for workload in "${WORKLOADS[@]}"; do
      save_reply "$server" "$workload"
    done
  done

  # Servers alternate within each cell, so a burst of outside load hurts all
  # of them alike instead of one server's whole series.
  for workload in "${WORKLOADS[@]}"; do
    if [[ $RESTART == workload ]]; then
      stop_servers
      start_servers
    fi
    for concurrency in "${CONCURRENCIES[@]}"; do
      for server in "${SERVERS[@]}"; do
        run_cell "$server" "$workload" "$concurrency"
      done
    done
  done
  stop_servers

  write_header "$started" "$load_start" "$compilers_start"
  python3 "$HARNESS/benchtool.py" report --records "$RECORDS" --header "$OUT_DIR/header.md" | tee "$OUT_DIR/results.md"
  log "report written to $OUT_DIR/results.md"
  if ((${#FAILED_CHECKS[@]} > 0)); then
    log "contract check failed for: ${FAILED_CHECKS[*]} (details in $OUT_DIR/logs/check-*.txt)"
    exit 3
  fi
}

main
