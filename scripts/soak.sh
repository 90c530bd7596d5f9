#!/usr/bin/env bash
# Runs a bounded load test against the release binary on 127.0.0.1 and fails
# on an unexpected 5xx, a transport failure, a wrong status, or idle memory
# that grows more than 10 % (and 4 MiB) between warm-up and the end of the run.
#
#   scripts/soak.sh                 10 minutes at concurrency 32
#   scripts/soak.sh --short         30 s after a 45 s warm-up, for CI
#   scripts/soak.sh --minutes N     N minutes
#   scripts/soak.sh --concurrency N N client threads
#   scripts/soak.sh --json FILE     also write the summary as JSON
#   scripts/soak.sh --warmup-seconds N   warm-up length (default: a tenth of
#                                   the run, at least 45 s)
#   scripts/soak.sh --phase-seconds N    read the idle RSS every N s of the run
#
# The mix has valid uploads (corpus photos, the 2 MP and 12 MP bench
# photos, small PNGs and other formats) and bad images (malformed, corrupt,
# unsupported, decompression bombs). It also has malformed bodies, bodies
# declared or sent over the 10 MiB limit, and probes of /health, /ready and
# /metrics.
# A warm-up of a tenth of the run (at least 45 s) comes first. The load
# generator is scripts/soak.py (Python 3 standard library only).
#
# IMGFLUX_BIN selects the binary; without it the script runs
# `cargo build --release`. IMGFLUX_* settings and glibc's MALLOC_* tuning
# variables in the environment are passed to the server. Images come from ../shared beside the repository, or from
# SOAK_SHARED_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=600
concurrency=32
extra_args=()

while (($#)); do
  case $1 in
    --short) seconds=30 ;;
    --minutes)
      [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "soak: --minutes needs a positive integer" >&2; exit 2; }
      seconds=$(($2 * 60))
      shift
      ;;
    --concurrency)
      [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "soak: --concurrency needs a positive integer" >&2; exit 2; }
      concurrency=$2
      shift
      ;;
    --json)
      [[ -n ${2:-} ]] || { echo "soak: --json needs a file name" >&2; exit 2; }
      extra_args+=(--json "$2")
      shift
      ;;
    --warmup-seconds | --phase-seconds)
      [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "soak: $1 needs a whole number of seconds" >&2; exit 2; }
      extra_args+=("$1" "$2")
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "soak: unknown argument '$1' (scripts/soak.sh --help lists the options)" >&2
      exit 2
      ;;
  esac
  shift
done

shared=${SOAK_SHARED_DIR:-$ROOT/../shared}
for folder in "$shared/corpus" "$shared/bench-images"; do
  [[ -d $folder ]] || { echo "soak: $folder is missing; set SOAK_SHARED_DIR" >&2; exit 2; }
done

binary=${IMGFLUX_BIN:-}
if [[ -z $binary ]]; then
  (cd "$ROOT" && cargo build --release --locked --quiet)
  binary=$ROOT/target/release/imgflux
fi
[[ -x $binary ]] || { echo "soak: $binary is not an executable" >&2; exit 2; }

echo "soak: $binary, $seconds s, concurrency $concurrency, on $(nproc) CPUs"
exec python3 "$ROOT/scripts/soak.py" --bin "$binary" --shared "$shared" \
  --seconds "$seconds" --concurrency "$concurrency" "${extra_args[@]}"
