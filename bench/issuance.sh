#!/usr/bin/env bash
# Token issuance throughput and latency of `agentauth serve` on SQLite, with
# GET /.well-known/jwks.json (a trivial endpoint) measured before and after
# as a reference, so the figure reads as a ratio on a noisy machine; then
# introspection (POST /oauth/introspect of one issued token by the admin).
#
#   bench/issuance.sh                 # defaults below
#   DURATION=15 CONNECTIONS=32 bench/issuance.sh
#   POLICY=both bench/issuance.sh     # policy off, then on, against fresh servers
#   POLICY=both ROUNDS=3 bench/issuance.sh   # off on, on off, off on; ratios per round and means
#   AGENTS=100000 bench/issuance.sh   # 100,000 more agents registered first (scale)
#   AGENTS=100000 SPREAD=1 bench/issuance.sh  # and the load comes from all of them, round-robin
#   bench/issuance.sh --smoke         # or BENCH_SMOKE=1: debug build, policy off and on, 1 s per wrk run
#
# Smoke mode checks that the script still works, not how fast anything is: it
# builds in the dev profile (sharing target/debug with `cargo test`), defaults
# to POLICY=both, DURATION=1, CONNECTIONS=2, THREADS=1 and BODIES=2000, and
# takes about half a minute once built.
#
# POLICY=off (the default) measures with no policy set (registry permissions
# alone decide); POLICY=on first loads and activates the example policies of
# policies/examples/ (POST /v1/policies with the admin credential from
# <data-dir>/admin-token), so every token request is also decided by Cedar
# (the requested read:customer is permitted by `reads-are-low-risk`, no
# approval); POLICY=both runs off then on, each against its own fresh server
# and data dir with its own jwks.json reference, and prints the on/off ratios.
# Each run also reports the server's CPU time per issued token (user + system
# from /proc over the issuance run), less sensitive to a busy machine than
# throughput.
#
# Needs wrk (apt-get install -y wrk), curl, and python3 for policy on.
# Everything targets 127.0.0.1 only, every run is bounded (wrk -d, --timeout;
# `timeout` around each step) and the server is killed on exit. Only 200 answers carrying an access token count
# as issued tokens; anything else is reported as non-200, and a run with
# non-200 answers or no issued token makes the script exit non-zero.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-}
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
(($# == 0)) || { echo "usage: bench/issuance.sh [--smoke] (settings come from the environment)" >&2; exit 2; }
if [[ -n $SMOKE && $SMOKE != 0 ]]; then
  echo "== smoke run: debug build, tiny counts; it checks that this script works, its figures mean nothing"
  SMOKE=1
  DURATION=${DURATION:-1} CONNECTIONS=${CONNECTIONS:-2} THREADS=${THREADS:-1}
  BODIES=${BODIES:-2000} POLICY=${POLICY:-both}
else
  SMOKE=
fi

DURATION=${DURATION:-12}        # seconds per wrk run
CONNECTIONS=${CONNECTIONS:-16}  # concurrent keep-alive connections
THREADS=${THREADS:-2}           # wrk threads
# Fresh assertions minted for the issuance run; more than the run can use
# (a thread that runs out stops rather than replay one).
BODIES=${BODIES:-60000}
POLICY=${POLICY:-off}           # off | on | both
AGENTS=${AGENTS:-0}             # extra agents registered (load-0 …) before the runs
SPREAD=${SPREAD:-0}             # 1: assertions round-robin over those agents, not only reader
[[ $AGENTS =~ ^[0-9]{1,7}$ ]] || { echo "AGENTS must be a count up to 9,999,999" >&2; exit 1; }
[[ $SPREAD == 0 || ($SPREAD == 1 && $AGENTS -gt 0) ]] || { echo "SPREAD=1 needs AGENTS > 0" >&2; exit 1; }
ROUNDS=${ROUNDS:-1}             # runs per mode; with both, rounds alternate the order
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "ROUNDS must be 1 to 99" >&2; exit 1; }
RUNS=()
for r in $(seq "$ROUNDS"); do
  case $POLICY in
    off | on) RUNS+=("$POLICY-$r") ;;
    # off then on, then on then off, …: a drift over the session hits both alike.
    both) if ((r % 2)); then RUNS+=("off-$r" "on-$r"); else RUNS+=("on-$r" "off-$r"); fi ;;
    *) echo "POLICY must be off, on or both, not \"$POLICY\"" >&2; exit 1 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
if [[ $POLICY != off ]]; then
  command -v python3 >/dev/null || { echo "python3 is missing (it builds the policy load request)" >&2; exit 1; }
fi

if [[ -n $SMOKE ]]; then PROFILE=(); PROFILE_DIR=debug; else PROFILE=(--release); PROFILE_DIR=release; fi
echo "== building ($PROFILE_DIR)"
# --workspace: the features `cargo test --workspace` builds with, so a smoke run
# after the tests reuses their binaries.
timeout 1800 cargo build "${PROFILE[@]}" --quiet --workspace --bin agentauth --example mint_assertions --example register_agents
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE_DIR/agentauth
MINT=$TARGET/$PROFILE_DIR/examples/mint_assertions
REGISTER_MANY=$TARGET/$PROFILE_DIR/examples/register_agents

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-bench.XXXXXX")
SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

WRK=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency)
STEP_TIMEOUT=$((DURATION + 60))
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$1"; }
# utime + stime of the server in clock ticks (Linux /proc; empty elsewhere).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || true; }

# The example policies as the body of POST /v1/policies, activated at once.
policy_body() {
  python3 - "$ROOT/policies/examples" <<'PY'
import json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("*.cedar"))
print(json.dumps({"files": [{"name": f.name, "text": f.read_text()} for f in files],
                  "activate": True}))
PY
}

# One measurement against a fresh server: RUN is MODE-ROUND, MODE off or on;
# everything it writes goes to $WORK/RUN.
run_mode() {
  local MODE=${1%-*}
  local DIR=$WORK/$1
  mkdir -p "$DIR"

  echo "== [policy $MODE] starting agentauth serve (SQLite in $DIR/data)"
  # Port 0: the kernel picks a free port; the banner names it (and the issuer).
  # Rate limits off: this measures throughput, not the 429 path.
  # The files exist before the server starts, so reading them never races its redirection.
  : >"$DIR/stdout"
  : >"$DIR/server.log"
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DIR/data" --token-requests-per-address 0 --token-requests-per-client 0 >"$DIR/stdout" 2>"$DIR/server.log" &
  SERVER_PID=$!
  URL=
  for _ in $(seq 300); do
    URL=$(sed -n 's/^agentauth listening on \(http:[^ ]*\).*/\1/p' "$DIR/stdout" | head -n1)
    [[ -n $URL ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $URL ]] || { echo "the server did not start within 30 s" >&2; cat "$DIR/server.log" >&2; exit 1; }
  case $URL in http://127.0.0.1:*) ;; *) echo "unexpected address $URL" >&2; exit 1 ;; esac
  echo "   $URL"

  register() { # NAME [--permission P]...
    local name=$1; shift
    AGENTAUTH_URL=$URL timeout 30 "$BIN" agent register "$name" "$@" \
      --key-out "$DIR/$name.key.json" --data-dir "$DIR/data" >/dev/null
  }
  register reader --permission read:customer
  register customer
  if ((AGENTS > 0)); then
    echo "== registering $AGENTS more agents (load-0 …), 16 at a time"
    timeout 3600 "$REGISTER_MANY" "$URL" "$(cat "$DIR/data/admin-token")" "$AGENTS" load "$DIR/load-keys.tsv" 16
  fi

  if [[ $MODE == on ]]; then
    echo "== loading and activating the example policies (policies/examples/*.cedar)"
    policy_body >"$DIR/policies.json"
    LOADED=$(timeout 30 curl -sS -o "$DIR/policy-answer.json" -w '%{http_code}' \
      -H "Authorization: Bearer $(cat "$DIR/data/admin-token")" -H 'Content-Type: application/json' \
      --data-binary @"$DIR/policies.json" "$URL/v1/policies")
    if [[ $LOADED != 201 ]] || ! grep -q '"active":true' "$DIR/policy-answer.json"; then
      echo "loading the policies answered $LOADED: $(cat "$DIR/policy-answer.json")" >&2
      exit 1
    fi
    python3 -c "import json, sys; a = json.load(open(sys.argv[1])); print(f'   version {a[\"version\"]}: {a[\"policy_count\"]} policies, active')" "$DIR/policy-answer.json"
  fi
  # GET /v1/policy serves the active set, or {"version": null, "active": false}.
  ACTIVE=$(timeout 10 curl -sS -o "$DIR/policy-now.json" -w '%{http_code}' "$URL/v1/policy")
  ACTIVE=$ACTIVE:$(tr -d ' \n' <"$DIR/policy-now.json" | grep -o '"active":\(true\|false\)' || true)
  case $MODE:$ACTIVE in
    'on:200:"active":true' | 'off:200:"active":false') ;;
    *) echo "policy $MODE, but GET /v1/policy answered $ACTIVE: $(cat "$DIR/policy-now.json")" >&2; exit 1 ;;
  esac

  reference() { # LABEL
    echo "== [policy $MODE] reference: GET /.well-known/jwks.json ($1), ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
    timeout "$STEP_TIMEOUT" "${WRK[@]}" -s bench/reference.lua "$URL/.well-known/jwks.json" | tee "$DIR/ref-$1.txt"
  }

  reference before

  echo "== minting $((BODIES + 1)) client assertions (valid 60 s from now)"
  if ((SPREAD)); then
    echo "   round-robin over the $AGENTS agents of load-keys.tsv"
    timeout 300 "$MINT" "$URL" "@$DIR/load-keys.tsv" - "$((BODIES + 1))" >"$DIR/all-bodies.txt"
  else
    timeout 120 "$MINT" "$URL" reader "$DIR/reader.key.json" "$((BODIES + 1))" >"$DIR/all-bodies.txt"
  fi
  tail -n +2 "$DIR/all-bodies.txt" >"$DIR/bodies.txt"
  # One request first, with its own assertion: fail fast with the server's words.
  PROBE=$(timeout 10 curl -sS -o "$DIR/probe-answer.json" -w '%{http_code}' \
    -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "$(head -n1 "$DIR/all-bodies.txt")" "$URL/oauth/token")
  if [[ $PROBE != 200 ]]; then
    echo "probe token request answered $PROBE: $(cat "$DIR/probe-answer.json")" >&2
    exit 1
  fi

  echo "== [policy $MODE] issuance: POST /oauth/token, ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
  local cpu_before
  cpu_before=$(cpu_ticks)
  timeout "$STEP_TIMEOUT" "${WRK[@]}" -s bench/issuance.lua "$URL/oauth/token" -- "$DIR/bodies.txt" "$THREADS" \
    | tee "$DIR/issuance.txt"
  # The server's CPU time (user + system) over the issuance run, per issued token.
  awk -v b="$cpu_before" -v a="$(cpu_ticks)" -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" \
    -v ok="$(field "$DIR/issuance.txt" ok)" \
    'BEGIN { if (b == "" || a == "" || ok == 0) print "n/a"; else printf "%.3f\n", (a - b) / hz * 1000 / ok }' \
    >"$DIR/cpu-ms-per-token"

  reference after

  # Introspection of the probe's token by the admin (RFC 7662), which every
  # resource server without the SDK's offline check would call per request.
  TOKEN=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$DIR/probe-answer.json")
  ADMIN=$(cat "$DIR/data/admin-token")
  ACTIVE=$(timeout 10 curl -sS -H "Authorization: Bearer $ADMIN" --data-urlencode "token=$TOKEN" "$URL/oauth/introspect" | tr -d ' \n')
  case $ACTIVE in *'"active":true'*) ;; *) echo "introspection of the probe token answered: $ACTIVE" >&2; exit 1 ;; esac
  echo "== [policy $MODE] introspection: POST /oauth/introspect, ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
  timeout "$STEP_TIMEOUT" "${WRK[@]}" -s bench/introspection.lua "$URL/oauth/introspect" -- "$TOKEN" "$ADMIN" \
    | tee "$DIR/introspection.txt"

  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server died during the run" >&2; exit 1; }
  grep -c -E ' (ERROR|WARN) ' "$DIR/server.log" >"$DIR/warn-errors" || true
  sqlite3 "$DIR/data/agentauth.db" 'SELECT count(*) FROM issued_tokens' >"$DIR/issued" 2>/dev/null || echo 'n/a (no sqlite3)' >"$DIR/issued"
  # Issuances whose audit record names the policy version that decided them.
  sqlite3 "$DIR/data/agentauth.db" "SELECT count(*) FROM audit_log WHERE kind = 'token.issued' AND reason LIKE '%policy version%'" >"$DIR/decided" 2>/dev/null || echo 'n/a' >"$DIR/decided"
  stop_server
}

for run in "${RUNS[@]}"; do
  run_mode "$run"
done

summary() { # RUN
  local DIR=$WORK/$1
  local ISS REF_BEFORE REF_AFTER
  ISS=$(field "$DIR/issuance.txt" ok_per_s)
  REF_BEFORE=$(field "$DIR/ref-before.txt" req_per_s)
  REF_AFTER=$(field "$DIR/ref-after.txt" req_per_s)
  echo
  echo "== summary, policy ${1%-*}, round ${1##*-} (concurrency $CONNECTIONS over $THREADS wrk threads, ${DURATION}s per run)"
  echo "registered agents:          $((AGENTS + 2))  (load from $( ((SPREAD)) && echo "all $AGENTS load-* agents, round-robin" || echo "reader alone"))"
  echo "issued tokens/s:            $ISS  (p50 $(field "$DIR/issuance.txt" p50_ms) ms, p99 $(field "$DIR/issuance.txt" p99_ms) ms)"
  echo "server CPU per token:       $(cat "$DIR/cpu-ms-per-token") ms (user + system, over the issuance run)"
  echo "non-200 token answers:      $(field "$DIR/issuance.txt" non200)  (socket errors $(field "$DIR/issuance.txt" socket_errors), threads out of bodies $(field "$DIR/issuance.txt" threads_out_of_bodies))"
  echo "introspection answers/s:    $(field "$DIR/introspection.txt" req_per_s)  (p50 $(field "$DIR/introspection.txt" p50_ms) ms, p99 $(field "$DIR/introspection.txt" p99_ms) ms, non-200 $(field "$DIR/introspection.txt" non2xx))"
  echo "jwks.json req/s before:     $REF_BEFORE  (p99 $(field "$DIR/ref-before.txt" p99_ms) ms)"
  echo "jwks.json req/s after:      $REF_AFTER  (p99 $(field "$DIR/ref-after.txt" p99_ms) ms)"
  awk -v i="$ISS" -v b="$REF_BEFORE" -v a="$REF_AFTER" \
    'BEGIN { printf "issuance / jwks ratio:      %.3f\n", i / ((b + a) / 2) }'
  echo "server log lines at WARN/ERROR: $(cat "$DIR/warn-errors")"
  echo "issued_tokens rows: $(cat "$DIR/issued")"
  echo "token.issued audit records naming a policy version: $(cat "$DIR/decided")"
  # One row for the comparison: mode round tokens/s p50 p99 jwks-mean cpu-ms.
  echo "${1%-*} ${1##*-} $ISS $(field "$DIR/issuance.txt" p50_ms) $(field "$DIR/issuance.txt" p99_ms)" \
    "$(awk -v b="$REF_BEFORE" -v a="$REF_AFTER" 'BEGIN { print (a + b) / 2 }') $(cat "$DIR/cpu-ms-per-token")" \
    >>"$WORK/rows"
}
for run in "${RUNS[@]}"; do summary "$run"; done

if [[ $POLICY == both ]]; then
  # Per round and over all rounds (means): on ÷ off, raw and with each run's
  # throughput divided by its own server's jwks.json reference.
  awk '
    { m = $1; r = $2; tok[m, r] = $3; p50[m, r] = $4; p99[m, r] = $5; ref[m, r] = $6; cpu[m, r] = $7
      if (r > rounds) rounds = r
      T[m] += $3; P50[m] += $4; P99[m] += $5; N[m] += $3 / $6; C[m] += $7 }
    END {
      print ""
      print "== policy on / policy off"
      printf "%-8s %10s %10s %10s %10s %10s %14s\n", "round", "tokens/s", "÷ jwks", "p50", "p99", "CPU/token", "CPU on - off"
      for (r = 1; r <= rounds; r++)
        printf "%-8s %10.3f %10.3f %10.3f %10.3f %10.3f %11.3f ms\n", r, tok["on", r] / tok["off", r],
          (tok["on", r] / ref["on", r]) / (tok["off", r] / ref["off", r]), p50["on", r] / p50["off", r],
          p99["on", r] / p99["off", r], cpu["on", r] / cpu["off", r], cpu["on", r] - cpu["off", r]
      if (rounds > 1) {
        printf "%-8s %10.3f %10.3f %10.3f %10.3f %10.3f %11.3f ms\n", "means", T["on"] / T["off"], N["on"] / N["off"],
          P50["on"] / P50["off"], P99["on"] / P99["off"], C["on"] / C["off"], (C["on"] - C["off"]) / rounds
        printf "mean tokens/s off %.1f, on %.1f; mean p50 off %.2f ms, on %.2f ms; mean p99 off %.2f ms, on %.2f ms\n",
          T["off"] / rounds, T["on"] / rounds, P50["off"] / rounds, P50["on"] / rounds, P99["off"] / rounds, P99["on"] / rounds
      }
    }' "$WORK/rows"
fi

# A run that issued nothing, or got any answer but a token, failed.
FAILED=0
for run in "${RUNS[@]}"; do
  OK=$(field "$WORK/$run/issuance.txt" ok)
  NON200=$(field "$WORK/$run/issuance.txt" non200)
  if [[ ${OK:-0} == 0 || ${NON200:-1} != 0 ]]; then
    echo "FAILED: policy ${run%-*}, round ${run##*-}: ${OK:-no} tokens issued, ${NON200:-unknown} non-200 answers" >&2
    FAILED=1
  fi
  INTROSPECTED=$(field "$WORK/$run/introspection.txt" requests)
  NON200=$(field "$WORK/$run/introspection.txt" non2xx)
  if [[ ${INTROSPECTED:-0} == 0 || ${NON200:-1} != 0 ]]; then
    echo "FAILED: policy ${run%-*}, round ${run##*-}: ${INTROSPECTED:-no} introspections, ${NON200:-unknown} non-200 answers" >&2
    FAILED=1
  fi
done
exit "$FAILED"
