#!/usr/bin/env bash
# Token issuance throughput and latency of `agentauth serve` on SQLite, with
# GET /.well-known/jwks.json (a trivial endpoint) measured before and after
# as a reference, so the figure reads as a ratio on a noisy machine.
#
#   bench/issuance.sh                 # defaults below
#   DURATION=15 CONNECTIONS=32 bench/issuance.sh
#
# Needs wrk (apt-get install -y wrk). Everything targets 127.0.0.1 only, every
# run is bounded (wrk -d, --timeout; `timeout` around each step) and the
# server is killed on exit. Only 200 answers carrying an access token count
# as issued tokens; anything else is reported as non-200.
set -euo pipefail

DURATION=${DURATION:-12}        # seconds per wrk run
CONNECTIONS=${CONNECTIONS:-16}  # concurrent keep-alive connections
THREADS=${THREADS:-2}           # wrk threads
# Fresh assertions minted for the issuance run; more than the run can use
# (a thread that runs out stops rather than replay one).
BODIES=${BODIES:-60000}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

echo "== building (release)"
timeout 1800 cargo build --release --quiet
timeout 1800 cargo build --release --quiet -p agentauth-sdk --example mint_assertions
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/agentauth
MINT=$TARGET/release/examples/mint_assertions

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-bench.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== starting agentauth serve (SQLite in $WORK/data)"
# Port 0: the kernel picks a free port; the banner names it (and the issuer).
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$WORK/server.log" &
SERVER_PID=$!
URL=
for _ in $(seq 300); do
  URL=$(sed -n 's/^agentauth listening on \(http:[^ ]*\).*/\1/p' "$WORK/stdout" | head -n1)
  [[ -n $URL ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $URL ]] || { echo "the server did not start within 30 s" >&2; cat "$WORK/server.log" >&2; exit 1; }
case $URL in http://127.0.0.1:*) ;; *) echo "unexpected address $URL" >&2; exit 1 ;; esac
echo "   $URL"

register() { # NAME [--permission P]...
  local name=$1; shift
  AGENTAUTH_URL=$URL timeout 30 "$BIN" agent register "$name" "$@" \
    --key-out "$WORK/$name.key.json" --data-dir "$WORK/data" >/dev/null
}
register reader --permission read:customer
register customer

WRK=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency)
STEP_TIMEOUT=$((DURATION + 60))

reference() { # LABEL
  echo "== reference: GET /.well-known/jwks.json ($1), ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
  timeout "$STEP_TIMEOUT" "${WRK[@]}" -s bench/reference.lua "$URL/.well-known/jwks.json" | tee "$WORK/ref-$1.txt"
}

reference before

echo "== minting $((BODIES + 1)) client assertions (valid 60 s from now)"
timeout 120 "$MINT" "$URL" reader "$WORK/reader.key.json" "$((BODIES + 1))" >"$WORK/all-bodies.txt"
tail -n +2 "$WORK/all-bodies.txt" >"$WORK/bodies.txt"
# One request first, with its own assertion: fail fast with the server's words.
PROBE=$(timeout 10 curl -sS -o "$WORK/probe-answer.json" -w '%{http_code}' \
  -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-binary "$(head -n1 "$WORK/all-bodies.txt")" "$URL/oauth/token")
if [[ $PROBE != 200 ]]; then
  echo "probe token request answered $PROBE: $(cat "$WORK/probe-answer.json")" >&2
  exit 1
fi

echo "== issuance: POST /oauth/token, ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
timeout "$STEP_TIMEOUT" "${WRK[@]}" -s bench/issuance.lua "$URL/oauth/token" -- "$WORK/bodies.txt" "$THREADS" \
  | tee "$WORK/issuance.txt"

reference after

kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server died during the run" >&2; exit 1; }
ERRORS=$(grep -c -E ' (ERROR|WARN) ' "$WORK/server.log" || true)

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$1"; }
ISS=$(field "$WORK/issuance.txt" ok_per_s)
REF_BEFORE=$(field "$WORK/ref-before.txt" req_per_s)
REF_AFTER=$(field "$WORK/ref-after.txt" req_per_s)
echo
echo "== summary (concurrency $CONNECTIONS over $THREADS wrk threads, ${DURATION}s per run)"
echo "issued tokens/s:            $ISS  (p50 $(field "$WORK/issuance.txt" p50_ms) ms, p99 $(field "$WORK/issuance.txt" p99_ms) ms)"
echo "non-200 token answers:      $(field "$WORK/issuance.txt" non200)  (socket errors $(field "$WORK/issuance.txt" socket_errors), threads out of bodies $(field "$WORK/issuance.txt" threads_out_of_bodies))"
echo "jwks.json req/s before:     $REF_BEFORE  (p99 $(field "$WORK/ref-before.txt" p99_ms) ms)"
echo "jwks.json req/s after:      $REF_AFTER  (p99 $(field "$WORK/ref-after.txt" p99_ms) ms)"
awk -v i="$ISS" -v b="$REF_BEFORE" -v a="$REF_AFTER" \
  'BEGIN { printf "issuance / jwks ratio:      %.3f\n", i / ((b + a) / 2) }'
echo "server log lines at WARN/ERROR: $ERRORS"
echo "issued_tokens rows: $(sqlite3 "$WORK/data/agentauth.db" 'SELECT count(*) FROM issued_tokens' 2>/dev/null || echo 'n/a (no sqlite3)')"
