#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ once, then runs each for a while.
#
#   scripts/fuzz.sh                    every target for 60 s
#   scripts/fuzz.sh --seconds N        every target for N s
#   scripts/fuzz.sh --target NAME      only this target (multipart, query or request)
#
# Needs the nightly toolchain (rustup toolchain install nightly) and installs
# cargo-fuzz when it is missing. Each target starts from the committed seeds
# in fuzz/seeds/<target> and keeps what it learns in fuzz/corpus/<target>,
# which git ignores. A crash, a leak, an input slower than 30 s or an RSS over
# 2 GiB stops the run with exit code 1 and prints the input's path under
# fuzz/artifacts/ and the command that replays it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=60
targets=(multipart query request)

while (($#)); do
  case $1 in
    --seconds)
      [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "fuzz: --seconds needs a positive integer" >&2; exit 2; }
      seconds=$2
      shift
      ;;
    --target)
      [[ ${2:-} =~ ^(multipart|query|request)$ ]] || { echo "fuzz: --target is one of multipart, query, request" >&2; exit 2; }
      targets=("$2")
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "fuzz: unknown argument '$1' (scripts/fuzz.sh --help lists the options)" >&2
      exit 2
      ;;
  esac
  shift
done

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing; run: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd "$ROOT"
echo "==> building the fuzz targets"
cargo +nightly fuzz build

max_len() {
  case $1 in
    query) echo 1024 ;;
    *) echo 16384 ;;
  esac
}

log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  log=$log_dir/$target.log
  echo "==> fuzzing $target for $seconds s"
  if ! cargo +nightly fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=30 \
    -rss_limit_mb=2048 -dict=fuzz/imgflux.dict -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | cut -d' ' -f5)
    echo "fuzz: $target failed; input: ${artifact:-not written, see the output above}" >&2
    [[ -n $artifact ]] && echo "fuzz: replay with: cargo +nightly fuzz run $target $artifact" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done ' "$log" || true
  echo "<== $target: no crash in $seconds s"
done
