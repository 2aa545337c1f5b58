#!/usr/bin/env bash
# Token issuance of `agentauth serve` next to a peer authority, node's
# oidc-provider 9 (bench/peer/), in one run: the same load generator (wrk with
# bench/issuance.lua), the same request (POST /oauth/token, grant_type
# client_credentials, resource and scope, a fresh private_key_jwt client
# assertion in every request, never one twice), the same settings, and for
# each server its tokens/s, p50, p99 and server CPU per token, with the ratios
# agentauth / peer.
#
#   bench/compare.sh                      # defaults below, SQLite
#   STORE=postgres bench/compare.sh       # agentauth on PostgreSQL (DATABASE_URL)
#   DURATION=20 CONNECTIONS=32 bench/compare.sh
#   bench/compare.sh --smoke              # or BENCH_SMOKE=1: debug build, 1 s per wrk run
#
# Order: agentauth, then the peer, then agentauth again, each against a fresh
# server, so a drift over the session (a shared machine) hits both alike; the
# agentauth figures are the means of its two runs. Server CPU per token is the
# server process's user + system time from /proc over the wrk run divided by
# the tokens issued, less sensitive to a busy machine than throughput. With
# STORE=postgres that is agentauth's process alone; the CPU of its PostgreSQL
# backends over the same run is printed on a line of its own.
#
# Smoke mode checks that the script still works, not how fast anything is: it
# builds in the dev profile (sharing target/debug with `cargo test`), defaults
# to DURATION=1, CONNECTIONS=2, THREADS=1 and BODIES=2000, and takes well under
# a minute once built and installed. Otherwise the release build is the one
# bench/issuance.sh uses (same command, so the binaries are shared).
#
# Fairness, read the ratios with these in mind:
# - the peer is one node process (one JavaScript thread); agentauth is one
#   process on a multi-threaded runtime. wrk shares the machine with both.
# - the peer signs and verifies with ES256 (client assertion and access token);
#   agentauth with Ed25519 (its signing key, and the client key that
#   `agent register` makes by default).
# - the peer keeps state in oidc-provider's in-memory adapter (its default and
#   quick-start store): per request it remembers the assertion's jti, in an LRU
#   of 1000 entries shared by everything it stores, so replays are caught only
#   while the entry is in it; JWT access tokens are not stored, nothing is
#   audited, nothing survives a restart. agentauth writes to SQLite (or
#   PostgreSQL) before it answers: the jti (kept until its exp), the issued
#   token's record and an entry of the hash-chained audit log, all durable.
# - both issue a JWT access token for the resource named in the request
#   (300 s), and neither has a rate limit (agentauth's are turned off here).
#
# STORE=sqlite (default) puts agentauth's database in a fresh data dir;
# STORE=postgres gives each agentauth run a fresh database
# agentauth_bench_<pid>_<run> on the server of DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test; the user must be allowed to CREATE
# DATABASE), dropped again on exit, and needs psql.
#
# The peer's libraries are pinned in bench/peer/package-lock.json and
# installed once with `npm ci` under target/bench-peer/node-<hash of the
# package files>/ (so reruns reuse it); the first install needs the npm
# registry and is bounded to 600 s.
#
# Needs wrk (apt-get install -y wrk), curl, node (20.18 or later; oidc-provider
# prefers 22 LTS) and npm (apt-get install -y nodejs npm), and psql for
# STORE=postgres (apt-get install -y postgresql-client). Everything targets
# 127.0.0.1 only, every step is bounded (wrk -d, --timeout; `timeout` around
# each step) and the servers are killed on exit. Only 200 answers carrying an
# access token count as issued tokens; a run with any other answer or with no
# token issued, or any failed step, makes the script exit non-zero.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-}
if [[ ${1:-} == --smoke ]]; then SMOKE=1; shift; fi
(($# == 0)) || { echo "usage: bench/compare.sh [--smoke] (settings come from the environment)" >&2; exit 2; }
if [[ -n $SMOKE && $SMOKE != 0 ]]; then
  echo "== smoke run: debug build, tiny counts; it checks that this script works, its figures mean nothing"
  SMOKE=1
  DURATION=${DURATION:-1} CONNECTIONS=${CONNECTIONS:-2} THREADS=${THREADS:-1} BODIES=${BODIES:-2000}
else
  SMOKE=
fi

DURATION=${DURATION:-12}        # seconds per wrk run
CONNECTIONS=${CONNECTIONS:-16}  # concurrent keep-alive connections
THREADS=${THREADS:-2}           # wrk threads
# Fresh assertions minted for each run; more than a run can use (a wrk thread
# that runs out stops rather than replay one).
BODIES=${BODIES:-60000}
STORE=${STORE:-sqlite}          # sqlite | postgres
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
for setting in DURATION CONNECTIONS THREADS BODIES; do
  [[ ${!setting} =~ ^[1-9][0-9]*$ ]] || { echo "$setting must be a positive whole number, not \"${!setting}\"" >&2; exit 1; }
done
case $STORE in sqlite | postgres) ;; *) echo "STORE must be sqlite or postgres, not \"$STORE\"" >&2; exit 1 ;; esac
RUNS=(agentauth-1 peer agentauth-2)

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node or npm is missing: apt-get install -y nodejs npm" >&2
  exit 1
fi
# oidc-provider 9 uses URL.parse (Node.js 20.18, 22.1 and later).
timeout 30 node -e 'process.exit(typeof URL.parse === "function" ? 0 : 1)' ||
  { echo "node $(node --version) is too old for oidc-provider 9: it needs Node.js 20.18 or later (22 LTS recommended)" >&2; exit 1; }
if [[ $STORE == postgres ]]; then
  command -v psql >/dev/null || { echo "psql is missing: apt-get install -y postgresql-client" >&2; exit 1; }
  case $DATABASE_URL in
    postgres://*@127.0.0.1[:/]* | postgresql://*@127.0.0.1[:/]* | postgres://127.0.0.1[:/]* | postgresql://127.0.0.1[:/]*) ;;
    *) echo "DATABASE_URL must name a PostgreSQL on 127.0.0.1 (this benchmark contacts nothing else), not $DATABASE_URL" >&2; exit 1 ;;
  esac
  timeout 10 psql -X -w -q -d "$DATABASE_URL" -Atc 'SELECT 1' >/dev/null ||
    { echo "PostgreSQL at $DATABASE_URL does not answer (pg_isready -d \"\$DATABASE_URL\")" >&2; exit 1; }
fi

if [[ -n $SMOKE ]]; then PROFILE=(); PROFILE_DIR=debug; else PROFILE=(--release); PROFILE_DIR=release; fi
echo "== building agentauth ($PROFILE_DIR)"
# --workspace: the features `cargo test --workspace` and bench/issuance.sh
# build with, so their binaries are shared.
timeout 1800 cargo build "${PROFILE[@]}" --quiet --workspace --bin agentauth --example mint_assertions
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE_DIR/agentauth
MINT=$TARGET/$PROFILE_DIR/examples/mint_assertions

# The peer's node_modules, installed once per version of the package files.
PEER_SRC=$ROOT/bench/peer
PEER_HASH=$(cat "$PEER_SRC/package.json" "$PEER_SRC/package-lock.json" | sha256sum | cut -c1-16)
PEER_DIR=$TARGET/bench-peer/node-$PEER_HASH
if [[ ! -e $PEER_DIR/.installed ]]; then
  echo "== installing the peer (npm ci of bench/peer/package-lock.json into $PEER_DIR)"
  mkdir -p "$TARGET/bench-peer"
  STAGING=$(mktemp -d "$TARGET/bench-peer/staging.XXXXXX")
  cp "$PEER_SRC/package.json" "$PEER_SRC/package-lock.json" "$STAGING/"
  if ! (cd "$STAGING" && timeout 600 npm ci --no-audit --no-fund --loglevel=error); then
    rm -rf "$STAGING"
    echo "npm ci failed (is the npm registry reachable?)" >&2
    exit 1
  fi
  touch "$STAGING/.installed"
  # Another run may have finished the same install meanwhile: keep the first.
  mv -T "$STAGING" "$PEER_DIR" 2>/dev/null || rm -rf "$STAGING"
  [[ -e $PEER_DIR/.installed ]] || { echo "the peer install in $PEER_DIR is incomplete" >&2; exit 1; }
fi
echo "== peer: oidc-provider $(node -p 'require(process.argv[1]).version' "$PEER_DIR/node_modules/oidc-provider/package.json"), node $(node --version)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentauth-compare.XXXXXX")
# The peer's scripts run from the work dir: ESM resolves `node_modules` from
# the script's directory, here a link to the install.
mkdir -p "$WORK/peer"
ln -s "$PEER_DIR/node_modules" "$WORK/peer/node_modules"
cp "$PEER_SRC/server.mjs" "$PEER_SRC/mint.mjs" "$WORK/peer/"

SERVER_PID=
DATABASES=()
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
# DATABASE_URL with its database replaced by $1 (keeping any ?query).
database_url_for() {
  local base=${DATABASE_URL%%\?*} query=
  [[ $DATABASE_URL == *\?* ]] && query="?${DATABASE_URL#*\?}"
  echo "${base%/*}/$1$query"
}
drop_database() {
  timeout 30 psql -X -w -q -d "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 ||
    echo "could not drop database $1" >&2
}
cleanup() {
  stop_server
  local db
  for db in ${DATABASES[@]+"${DATABASES[@]}"}; do drop_database "$db"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WRK=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency)
STEP_TIMEOUT=$((DURATION + 60))
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$1"; }
# utime + stime of a process in clock ticks (Linux /proc; empty elsewhere).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || true; }
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

# "PID TICKS" for each PostgreSQL backend connected to database $1.
pg_backend_ticks() {
  local pid
  for pid in $(timeout 10 psql -X -w -q -d "$DATABASE_URL" -Atc \
    "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid()" 2>/dev/null); do
    echo "$pid $(cpu_ticks "$pid")"
  done
}

# Waits for the line matching sed expression $2 in file $1 and prints what it captures.
await_banner() { # FILE SED-EXPR LOG
  local url=
  for _ in $(seq 300); do
    url=$(sed -n "$2" "$1" | head -n1)
    [[ -n $url ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited:" >&2; cat "$3" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $url ]] || { echo "the server did not start within 30 s" >&2; cat "$3" >&2; exit 1; }
  case $url in http://127.0.0.1:*) ;; *) echo "unexpected address $url" >&2; exit 1 ;; esac
  echo "$url"
}

start_agentauth() { # DIR RUN
  local dir=$1 db_args=() where="SQLite in $1/data"
  if [[ $STORE == postgres ]]; then
    local db=agentauth_bench_$$_${2##*-}
    DATABASES+=("$db")
    timeout 30 psql -X -w -q -d "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
    db_args=(--database-url "$(database_url_for "$db")")
    where="PostgreSQL database $db"
    echo "$db" >"$dir/database"
  fi
  echo "== [$2] starting agentauth serve ($where)"
  : >"$dir/stdout"
  : >"$dir/server.log"
  # Port 0: the kernel picks a free port; the banner names it (and the issuer).
  # Rate limits off: this measures throughput, not the 429 path.
  env -u AGENTAUTH_DATABASE_URL "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" \
    --token-requests-per-address 0 --token-requests-per-client 0 ${db_args[@]+"${db_args[@]}"} \
    >"$dir/stdout" 2>"$dir/server.log" &
  SERVER_PID=$!
  URL=$(await_banner "$dir/stdout" 's/^agentauth listening on \(http:[^ ]*\).*/\1/p' "$dir/server.log")
  echo "   $URL"
  local name
  for name in reader customer; do
    local perms=()
    [[ $name == reader ]] && perms=(--permission read:customer)
    AGENTAUTH_URL=$URL timeout 30 "$BIN" agent register "$name" ${perms[@]+"${perms[@]}"} \
      --key-out "$dir/$name.key.json" --data-dir "$dir/data" >/dev/null
  done
  echo "== [$2] minting $((BODIES + 1)) client assertions (Ed25519, valid 60 s from now)"
  timeout 120 "$MINT" "$URL" reader "$dir/reader.key.json" "$((BODIES + 1))" >"$dir/all-bodies.txt"
}

start_peer() { # DIR RUN
  local dir=$1 client=spiffe://agentauth.local/agent/reader
  echo "== [$2] starting the peer (oidc-provider, one node process, in-memory adapter)"
  : >"$dir/stdout"
  : >"$dir/server.log"
  NODE_ENV=production node "$WORK/peer/server.mjs" "$client" "$dir/client.key.json" \
    >"$dir/stdout" 2>"$dir/server.log" &
  SERVER_PID=$!
  URL=$(await_banner "$dir/stdout" 's/^peer listening on \(http:[^ ]*\).*/\1/p' "$dir/server.log")
  echo "   $URL"
  echo "== [$2] minting $((BODIES + 1)) client assertions (ES256, valid 60 s from now)"
  timeout 120 node "$WORK/peer/mint.mjs" "$URL" "$client" "$dir/client.key.json" "$((BODIES + 1))" \
    >"$dir/all-bodies.txt"
}

# One measurement against a fresh server; everything it writes goes to $WORK/RUN.
run_one() { # RUN
  local run=$1 dir=$WORK/$1
  mkdir -p "$dir"
  case $run in
    agentauth-*) start_agentauth "$dir" "$run" ;;
    peer) start_peer "$dir" "$run" ;;
  esac
  tail -n +2 "$dir/all-bodies.txt" >"$dir/bodies.txt"
  # One request first, with its own assertion: fail fast with the server's words.
  local probe
  probe=$(timeout 10 curl -sS -o "$dir/probe-answer.json" -w '%{http_code}' \
    -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "$(head -n1 "$dir/all-bodies.txt")" "$URL/oauth/token")
  if [[ $probe != 200 ]] || ! grep -q '"access_token"' "$dir/probe-answer.json"; then
    echo "[$run] probe token request answered $probe: $(cat "$dir/probe-answer.json")" >&2
    exit 1
  fi

  echo "== [$run] issuance: POST /oauth/token, ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
  local cpu_before pg_before=
  cpu_before=$(cpu_ticks "$SERVER_PID")
  [[ -e $dir/database ]] && pg_before=$(pg_backend_ticks "$(cat "$dir/database")" | tr '\n' ' ')
  timeout "$STEP_TIMEOUT" "${WRK[@]}" -s bench/issuance.lua "$URL/oauth/token" -- "$dir/bodies.txt" "$THREADS" \
    >"$dir/issuance.txt"
  local cpu_after
  cpu_after=$(cpu_ticks "$SERVER_PID")
  sed -n '/^RESULT /p; /^first non-200/p' "$dir/issuance.txt" | sed 's/^/   /'
  local ok
  ok=$(field "$dir/issuance.txt" ok)
  # The server's CPU time (user + system) over the run, per issued token.
  awk -v b="$cpu_before" -v a="$cpu_after" -v hz="$HZ" -v ok="${ok:-0}" \
    'BEGIN { if (b == "" || a == "" || ok == 0) print "n/a"; else printf "%.3f\n", (a - b) / hz * 1000 / ok }' \
    >"$dir/cpu-ms-per-token"
  if [[ -e $dir/database ]]; then
    # Backends alive before and after count their difference; ones opened
    # during the run count whole.
    pg_backend_ticks "$(cat "$dir/database")" |
      awk -v before="$pg_before" -v hz="$HZ" -v ok="${ok:-0}" '
        BEGIN { n = split(before, f, / +/); for (i = 1; i + 1 <= n; i += 2) b[f[i]] = f[i + 1] }
        $2 != "" { t += $2 - ($1 in b ? b[$1] : 0); seen++ }
        END { if (!seen || ok == 0) print "n/a"; else printf "%.3f\n", t / hz * 1000 / ok }' \
      >"$dir/pg-cpu-ms-per-token"
  fi

  kill -0 "$SERVER_PID" 2>/dev/null || { echo "[$run] the server died during the run" >&2; cat "$dir/server.log" >&2; exit 1; }
  stop_server
  if [[ -e $dir/database ]]; then
    drop_database "$(cat "$dir/database")"
  fi
}

for run in "${RUNS[@]}"; do
  run_one "$run"
done

# One row per run: name tokens/s p50 p99 cpu-ms.
for run in "${RUNS[@]}"; do
  f=$WORK/$run/issuance.txt
  echo "$run $(field "$f" ok_per_s) $(field "$f" p50_ms) $(field "$f" p99_ms) $(cat "$WORK/$run/cpu-ms-per-token")"
done >"$WORK/rows"

echo
echo "== agentauth ($STORE) and oidc-provider: POST /oauth/token, client_credentials + private_key_jwt," \
  "$CONNECTIONS connections over $THREADS wrk threads, ${DURATION}s per run"
awk '
  function num(x) { return x ~ /^[0-9.]+$/ }
  { tok[$1] = $2; p50[$1] = $3; p99[$1] = $4; cpu[$1] = $5 }
  END {
    fmt = "%-20s %10s %10s %10s %16s\n"
    printf fmt, "server", "tokens/s", "p50 ms", "p99 ms", "CPU/token ms"
    printf fmt, "agentauth run 1", tok["agentauth-1"], p50["agentauth-1"], p99["agentauth-1"], cpu["agentauth-1"]
    printf fmt, "agentauth run 2", tok["agentauth-2"], p50["agentauth-2"], p99["agentauth-2"], cpu["agentauth-2"]
    mc = (num(cpu["agentauth-1"]) && num(cpu["agentauth-2"])) ? sprintf("%.3f", (cpu["agentauth-1"] + cpu["agentauth-2"]) / 2) : "n/a"
    mt = (tok["agentauth-1"] + tok["agentauth-2"]) / 2
    printf fmt, "agentauth (mean)", sprintf("%.1f", mt),
      sprintf("%.2f", (p50["agentauth-1"] + p50["agentauth-2"]) / 2),
      sprintf("%.2f", (p99["agentauth-1"] + p99["agentauth-2"]) / 2), mc
    printf fmt, "oidc-provider", tok["peer"], p50["peer"], p99["peer"], cpu["peer"]
    print ""
    printf "agentauth / oidc-provider: tokens/s %s, CPU per token %s\n",
      (tok["peer"] > 0) ? sprintf("%.3f", mt / tok["peer"]) : "n/a",
      (num(mc) && num(cpu["peer"]) && cpu["peer"] > 0) ? sprintf("%.3f", mc / cpu["peer"]) : "n/a"
    printf "(tokens/s above 1 and CPU per token below 1 favour agentauth)\n"
  }' "$WORK/rows"
if [[ $STORE == postgres ]]; then
  echo "PostgreSQL backends' CPU per token (not in agentauth's figure): run 1 $(cat "$WORK/agentauth-1/pg-cpu-ms-per-token") ms," \
    "run 2 $(cat "$WORK/agentauth-2/pg-cpu-ms-per-token") ms"
fi
for run in "${RUNS[@]}"; do
  f=$WORK/$run/issuance.txt
  echo "$run: $(field "$f" ok) tokens, $(field "$f" non200) non-200, socket errors $(field "$f" socket_errors)," \
    "threads out of bodies $(field "$f" threads_out_of_bodies)"
done

# A run that issued nothing, or got any answer but a token, failed.
FAILED=0
for run in "${RUNS[@]}"; do
  OK=$(field "$WORK/$run/issuance.txt" ok)
  NON200=$(field "$WORK/$run/issuance.txt" non200)
  if [[ ${OK:-0} == 0 || ${NON200:-1} != 0 ]]; then
    echo "FAILED: $run: ${OK:-no} tokens issued, ${NON200:-unknown} non-200 answers" >&2
    grep '^first non-200' "$WORK/$run/issuance.txt" >&2 || true
    FAILED=1
  fi
done
exit "$FAILED"
