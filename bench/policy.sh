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
#   POLICY_BENCH_SIZES=10,100 bench/policy.sh   # other set sizes (default 10,100,1000)
#   bench/policy.sh --smoke                # or BENCH_SMOKE=1: dev profile, about half a minute
#
# Smoke mode checks that the bench, the example and this script still work,
# not how fast anything is: it builds in the dev profile (sharing target/debug
# with `cargo test`), leaves out the 1,000-policy set (seconds per load in a
# debug build), gives criterion tiny windows and a temporary results
# directory, times 1,000 decisions per case, and fails unless every benchmark
# produced a figure.
#
# In-process only: nothing is started or contacted. Every step is bounded by
# `timeout`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SMOKE=${BENCH_SMOKE:-}
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
if [[ $SMOKE == 0 ]]; then SMOKE=; fi
command -v python3 >/dev/null || { echo "python3 is missing (it prints the ratios)" >&2; exit 1; }

if [[ -n $SMOKE ]]; then
  echo "== smoke run: debug build, tiny counts; it checks that this script works, its figures mean nothing"
  DECISIONS=${DECISIONS:-1000}
  export POLICY_BENCH_SIZES=${POLICY_BENCH_SIZES:-10,100}
  BENCH_PROFILE=(--profile dev) RUN_PROFILE=() PROFILE_DIR=debug
  CRITERION=(--warm-up-time 0.1 --measurement-time 0.2 --sample-size 10 --nresamples 1000)
  CRITERION_HOME=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-policy-smoke.XXXXXX")
  export CRITERION_HOME
  trap 'rm -rf "$CRITERION_HOME"' EXIT
else
  DECISIONS=${DECISIONS:-20000}
  BENCH_PROFILE=() RUN_PROFILE=(--release) PROFILE_DIR=release
  CRITERION=(--warm-up-time 1 --measurement-time 3)
fi
# Every benchmark must have a figure when none was filtered out.
COMPLETE=$(($# == 0))

# --workspace: the features `cargo test --workspace` builds with, so a smoke run
# after the tests reuses what they built.
echo "== criterion: cargo bench ${BENCH_PROFILE[*]} --workspace --bench decision"
timeout 2400 cargo bench "${BENCH_PROFILE[@]}" --workspace --bench decision -- \
  "${CRITERION[@]}" "$@"

echo
echo "== percentiles: examples/decision_percentiles.rs ($PROFILE_DIR build), $DECISIONS decisions per case"
timeout 1800 cargo build "${RUN_PROFILE[@]}" --quiet --workspace --example decision_percentiles
timeout 1800 "${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE_DIR/examples/decision_percentiles" "$DECISIONS"

python3 - "${CRITERION_HOME:-${CARGO_TARGET_DIR:-$ROOT/target}/criterion}" "$COMPLETE" \
  "${POLICY_BENCH_SIZES:-10,100,1000}" <<'PY'
import json, pathlib, sys
base = pathlib.Path(sys.argv[1])
sizes = [int(n) for n in sys.argv[3].split(",")]

def estimate(*path):
    f = base.joinpath(*path, "new", "estimates.json")
    if not f.exists():
        return None
    e = json.loads(f.read_text())
    return e["mean"]["point_estimate"], e["median"]["point_estimate"]

ref = estimate("decision", "reference", "1")
print("\ncriterion (mean / median); ratios ÷ the reference (Cedar is_authorized, reads-are-low-risk alone, prebuilt request)")
print(f"{'benchmark':24} {'mean':>11} {'median':>11} {'÷ ref (mean/median)':>22}")
rows = [("reference", 1)] + [(q, n) for n in sizes for q in ("permit", "deny", "approval")]
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
missing = [f"{query}/{n}" for query, n in rows if estimate("decision", query, str(n)) is None]
if load is None:
    missing.append("policy_load/load/100")
if sys.argv[2] == "1" and missing:
    sys.exit(f"no figure for: {', '.join(missing)}")
PY
