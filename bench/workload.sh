#!/usr/bin/env bash
# Workload API rotation push latency: starts `agentauth serve
# --workload-socket` on loopback with a fresh data dir, and runs
# examples/workload_push.rs, which registers itself, opens FetchX509SVID
# and times ROUNDS CA rotations from the request to the pushed message,
# against the rotate call's own HTTP round trip in the same rounds.
#
#   bench/workload.sh                 # 30 rounds, release build
#   bench/workload.sh --smoke         # or BENCH_SMOKE=1: dev build, 2 rounds
#
# Smoke mode checks that the bench and this script still work, not how fast
# anything is. Everything stays on 127.0.0.1 and a temporary directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SMOKE=${BENCH_SMOKE:-}
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
if [[ $SMOKE == 0 ]]; then SMOKE=; fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ -n $SMOKE ]]; then
  echo "== smoke run: debug build, 2 rounds; it checks that this script works, its figures mean nothing"
  cargo build -q --bin agentauth --example workload_push
  BIN=$TARGET/debug
  ROUNDS=${ROUNDS:-2}
else
  cargo build -q --release --bin agentauth --example workload_push
  BIN=$TARGET/release
  ROUNDS=${ROUNDS:-30}
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-workload-bench.XXXXXX")
SERVER=
cleanup() {
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/agentauth" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" \
  --workload-socket "$WORK/api.sock" --replica-reread-secs 1 >"$WORK/out" 2>"$WORK/log" &
SERVER=$!
URL=
for _ in $(seq 100); do
  URL=$(sed -n 's/^agentauth listening on \(http[^ ]*\).*/\1/p' "$WORK/out")
  [[ -n $URL ]] && break
  sleep 0.1
done
[[ -n $URL ]] || { echo "the authority did not start" >&2; cat "$WORK/log" >&2; exit 1; }

AGENTAUTH_URL=$URL AGENTAUTH_ADMIN_TOKEN=$(cat "$WORK/data/admin-token") \
  SPIFFE_ENDPOINT_SOCKET="unix://$WORK/api.sock" ROUNDS=$ROUNDS \
  timeout 600 "$BIN/examples/workload_push" | tee "$WORK/result"
python3 - "$WORK/result" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read())
print(f"rotation pushed: median {r['push_median_ms']:.2f} ms (max {r['push_max_ms']:.2f} ms) over {r['rounds']} rounds; "
      f"the rotate call's round trip: median {r['rotate_round_trip_median_ms']:.2f} ms; push / round trip = {r['ratio']:.2f}x")
PY
