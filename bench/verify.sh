#!/usr/bin/env bash
# Runs the verifying-layer benchmarks (crates/sdk/benches/verify.rs) and prints
# each figure with its ratio to the bare Ed25519 signature check.
#
#   bench/verify.sh                      # all of them
#   bench/verify.sh layer_full_check     # extra arguments go to criterion
#   bench/verify.sh --smoke              # or BENCH_SMOKE=1: dev profile, ~0.3 s per benchmark
#
# Smoke mode checks that the bench and this script still work, not how fast
# anything is: it builds in the dev profile (sharing target/debug with
# `cargo test`), keeps criterion's results in a temporary directory instead of
# target/criterion, and fails unless every benchmark produced a figure.
#
# The bench starts an in-process authority on 127.0.0.1 (SQLite in a temp dir)
# to issue the token and serve the JWKS; nothing else is contacted.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SMOKE=${BENCH_SMOKE:-}
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
if [[ $SMOKE == 0 ]]; then SMOKE=; fi
command -v python3 >/dev/null || { echo "python3 is missing (it prints the ratios)" >&2; exit 1; }

if [[ -n $SMOKE ]]; then
  echo "== smoke run: debug build, tiny counts; it checks that this script works, its figures mean nothing"
  CRITERION_HOME=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-verify-smoke.XXXXXX")
  export CRITERION_HOME
  trap 'rm -rf "$CRITERION_HOME"' EXIT
  timeout 1800 cargo bench --profile dev --workspace --bench verify -- \
    --warm-up-time 0.1 --measurement-time 0.2 --sample-size 10 --nresamples 1000 "$@"
else
  timeout 1800 cargo bench --workspace --bench verify -- "$@"
fi
# Every benchmark must have a figure when none was filtered out.
COMPLETE=$(($# == 0))

python3 - "${CRITERION_HOME:-${CARGO_TARGET_DIR:-$ROOT/target}/criterion}/verify" "$COMPLETE" <<'PY'
import json, pathlib, sys
base = pathlib.Path(sys.argv[1])
order = ["ed25519_signature", "core_parse_and_verify", "core_request_signature",
         "cnf_key_from_json", "router_without_layer", "layer_bearer_check", "layer_full_check",
         "layer_full_check_uncached",
         "layer_full_check_with_audit", "mtls_handshake"]
est = {}
for name in order:
    f = base / name / "new" / "estimates.json"
    if f.exists():
        e = json.loads(f.read_text())
        est[name] = (e["mean"]["point_estimate"], e["median"]["point_estimate"])
ref = est.get("ed25519_signature")
print(f"\n{'benchmark':32} {'mean':>10} {'median':>10} {'÷ ed25519 (mean/median)':>26}")
for name, (mean, median) in est.items():
    ratio = f"{mean / ref[0]:.3f} / {median / ref[1]:.3f}" if ref else "-"
    print(f"{name:32} {mean / 1000:8.2f}µs {median / 1000:8.2f}µs {ratio:>26}")
def verdict(name, verifications, target):
    if ref and name in est:
        r = est[name][0] / (verifications * ref[0])
        print(f"{name} / ({verifications} x ed25519) = {r:.3f} (mean), target <= {target}: {'met' if r <= target else 'MISSED'}")
print()
verdict("layer_bearer_check", 1, 1.25)          # token check only: one signature
verdict("layer_full_check", 1, 1.10)            # token remembered: the request signature
verdict("layer_full_check_uncached", 2, 1.25)   # token + RFC 9421 request signature
if "mtls_handshake" in est and "layer_full_check" in est:
    h, l = est["mtls_handshake"][0], est["layer_full_check"][0]
    print(f"(mtls_handshake + layer_full_check) / layer_full_check = {(h + l) / l:.2f} (mean): a new mutual-TLS connection's first request")
missing = [name for name in order if name not in est]
if sys.argv[2] == "1" and missing:
    sys.exit(f"no figure for: {', '.join(missing)}")
PY
