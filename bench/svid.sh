#!/usr/bin/env bash
# Runs the X.509-SVID benchmarks (crates/svid/benches/issue.rs) and prints
# each figure with its ratio to one bare ECDSA P-256 signature, and the
# SVIDs one core issues per second.
#
#   bench/svid.sh                 # all of them
#   bench/svid.sh --smoke         # or BENCH_SMOKE=1: dev profile, tiny counts
#
# Smoke mode checks that the bench and this script still work, not how fast
# anything is. Nothing leaves the process.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SMOKE=${BENCH_SMOKE:-}
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
if [[ $SMOKE == 0 ]]; then SMOKE=; fi
command -v python3 >/dev/null || { echo "python3 is missing (it prints the ratios)" >&2; exit 1; }

if [[ -n $SMOKE ]]; then
  echo "== smoke run: debug build, tiny counts; it checks that this script works, its figures mean nothing"
  CRITERION_HOME=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-svid-smoke.XXXXXX")
  export CRITERION_HOME
  trap 'rm -rf "$CRITERION_HOME"' EXIT
  timeout 1800 cargo bench --profile dev -p agentauth-svid --bench issue -- \
    --warm-up-time 0.1 --measurement-time 0.2 --sample-size 10 --nresamples 1000 "$@"
else
  timeout 1800 cargo bench -p agentauth-svid --bench issue -- "$@"
fi

python3 - "${CRITERION_HOME:-${CARGO_TARGET_DIR:-$ROOT/target}/criterion}/svid" <<'PY'
import json, pathlib, sys
base = pathlib.Path(sys.argv[1])
order = ["ecdsa_p256_signature", "issue_from_csr", "check_svid"]
est = {}
for name in order:
    f = base / name / "new" / "estimates.json"
    if f.exists():
        e = json.loads(f.read_text())
        est[name] = (e["mean"]["point_estimate"], e["median"]["point_estimate"])
missing = [n for n in order if n not in est]
if missing:
    sys.exit(f"no figure for: {', '.join(missing)}")
ref = est["ecdsa_p256_signature"]
print(f"\n{'benchmark':24} {'mean':>10} {'median':>10} {'÷ ECDSA P-256 sign (mean/median)':>34}")
for name, (mean, median) in est.items():
    print(f"{name:24} {mean / 1000:8.2f}µs {median / 1000:8.2f}µs {mean / ref[0]:16.2f} / {median / ref[1]:.2f}")
print(f"\nSVIDs issued per second on one core: {1e9 / est['issue_from_csr'][0]:,.0f} (mean)")
PY
