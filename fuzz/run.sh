#!/usr/bin/env bash
# Runs the fuzz targets one after another on one core, niced, for SECS seconds
# each (default 600), then minimizes each corpus. Logs go to fuzz/logs/.
# Usage, from anywhere: fuzz/run.sh [target ...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${SECS:-600}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(jws jwk spiffe_id httpsig dpop form policy_context)
fi
# The toolchain is stable: RUSTC_BOOTSTRAP unlocks the -Z flags cargo-fuzz
# passes. No sanitizer: the code under test forbids unsafe (see README.md);
# libFuzzer still catches panics, aborts, stack overflows and slow inputs.
flags=(--sanitizer none --debug-assertions)
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 >"logs/$t.log" 2>&1
  RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz cmin "${flags[@]}" "$t" "corpus/$t" >"logs/$t.cmin.log" 2>&1
  echo "$t: $(grep -E '^(stat::number_of_executed_units|Done)' "logs/$t.log" | tr '\n' ' ') corpus $(ls "corpus/$t" | wc -l) files"
done
