#!/usr/bin/env bash
# Policy decision latency at 10, 100 and 1,000 policies
# (crates/policy/benches/decision.rs and examples/decision_percentiles.rs),
# each figure also as a ratio to a reference measured in the same run: Cedar's
# own is_authorized of the permit query against one policy
# (`reads-are-low-risk` alone), request and entities built beforehand.
#
#   bench/policy.sh                        # criterion (short windows), then p50/p99
#   DECISIONS=5000 bench/policy.sh         # fewer timed decisions per case in the p50/p99 run
#   bench/policy.sh --measurement-time 8   # extra arguments go to criterion
#
# In-process only: nothing is started or contacted. Every step is bounded by
# `timeout`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DECISIONS=${DECISIONS:-20000}

echo "== criterion: cargo bench -p agentauth-policy --bench decision"
timeout 2400 cargo bench -p agentauth-policy --bench decision -- \
  --warm-up-time 1 --measurement-time 3 "$@"

echo
echo "== percentiles: cargo run --release -p agentauth-policy --example decision_percentiles -- $DECISIONS"
timeout 1800 cargo run --release --quiet -p agentauth-policy --example decision_percentiles -- "$DECISIONS"

python3 - "${CARGO_TARGET_DIR:-$ROOT/target}/criterion" <<'PY'
import json, pathlib, sys
base = pathlib.Path(sys.argv[1])

def estimate(*path):
    f = base.joinpath(*path, "new", "estimates.json")
    if not f.exists():
        return None
    e = json.loads(f.read_text())
    return e["mean"]["point_estimate"], e["median"]["point_estimate"]

ref = estimate("decision", "reference", "1")
print("\ncriterion (mean / median); ratios ÷ the reference (Cedar is_authorized, reads-are-low-risk alone, prebuilt request)")
print(f"{'benchmark':24} {'mean':>11} {'median':>11} {'÷ ref (mean/median)':>22}")
rows = [("reference", 1)] + [(q, n) for n in (10, 100, 1000) for q in ("permit", "deny", "approval")]
for query, n in rows:
    e = estimate("decision", query, str(n))
    if e is None:
        continue
    ratio = f"{e[0] / ref[0]:.2f} / {e[1] / ref[1]:.2f}" if ref else "-"
    print(f"{query + '/' + str(n):24} {e[0] / 1000:9.2f}µs {e[1] / 1000:9.2f}µs {ratio:>22}")
load = estimate("policy_load", "load", "100")
if load:
    print(f"{'PolicySet::load/100':24} {load[0] / 1e6:9.2f}ms {load[1] / 1e6:9.2f}ms   (one-off, per load or activation)")
for query in ("permit", "deny", "approval"):
    e = estimate("decision", query, "100")
    if e:
        verdict = "met" if e[1] <= 20_000 else "MISSED"
        print(f"median at 100 policies, {query}: {e[1] / 1000:.2f} µs (target p50 ≤ 20 µs: {verdict})")
PY
