#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for a bounded time each; fails on any crash,
# panic, timeout or out-of-memory. Usage:
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
# Environment:
#   FUZZ_SANITIZER  none (default: larder is #![forbid(unsafe_code)], so the sanitizer mostly
#                   costs speed) or address (ASan, for runs that should also watch the C/asm
#                   parts of dependencies).
#   FUZZ_JOBS       parallel libFuzzer workers per target (default 1).
# The checked-in seeds in fuzz/corpus/<target> are read, never written: new inputs go to
# fuzz/target/work/<target>, which persists between runs. A crash leaves its input in
# fuzz/artifacts/<target>/ and the command to reproduce it is printed.
# Works on the stable toolchain: cargo-fuzz's -Z flags are enabled with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked --quiet
fi

cd fuzz
mkdir -p target
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi

echo "== building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
  cargo fuzz build -s "$sanitizer" "$t" >target/build.log 2>&1 || { tail -n 40 target/build.log >&2; echo "fuzz build of $t failed" >&2; exit 1; }
done
rm -f target/build.log

summary=target/fuzz-summary.txt
: >"$summary"
status=0
for t in "${targets[@]}"; do
  mkdir -p "target/work/$t" "corpus/$t"
  log="target/work/$t.log"
  echo "== fuzzing $t for ${secs}s"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GiB is an OOM.
  par=()
  if [ "$jobs" -gt 1 ]; then par=(-jobs="$jobs" -workers="$jobs"); fi
  if ! cargo fuzz run -s "$sanitizer" "$t" "target/work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 "${par[@]}" \
      -print_final_stats=1 >"$log" 2>&1; then
    status=1
    echo "!! $t FAILED; last lines of $PWD/$log:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 40 >&2
    echo "!! reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer $t artifacts/$t/<file>" >&2
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | awk '{s+=$1} END {print s}')
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  printf '%-18s %6ss  execs %12s  cov %6s  ft %7s  corpus %6s\n' \
    "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" | tee -a "$summary"
done
echo "== summary (fuzz/$summary)"
cat "$summary"
if [ "$status" != 0 ]; then echo "fuzz: FAILED (a target crashed; see above)" >&2; fi
exit "$status"
