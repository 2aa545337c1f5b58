-- wrk script for POST /oauth/token: every request sends the next pre-minted
-- form body (each with its own single-use client assertion), never one twice.
--
--   wrk ... -s bench/issuance.lua URL -- BODIES_FILE THREADS
--
-- Thread k (1-based) takes lines k, k+THREADS, k+2*THREADS, ... of the file,
-- so no two threads share an assertion. A thread that runs out stops (and the
-- summary says so) rather than replay an assertion. Responses other than 200
-- are counted and the first one is shown: a replayed or expired assertion
-- answers 401 and is not throughput.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  assert(path and nthreads, "usage: -- BODIES_FILE THREADS")
  bodies = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id - 1 and #line > 0 then
      bodies[#bodies + 1] = line
    end
    i = i + 1
  end
  nbodies = #bodies
  nextb = 1
  ok, bad, exhausted = 0, 0, 0
  first_bad = ""
  wrk.method = "POST"
  wrk.path = "/oauth/token"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  if nextb > nbodies then
    -- Out of fresh assertions: stop this thread instead of replaying one.
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  local body = bodies[nextb]
  nextb = nextb + 1
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 200 then
    -- Only token answers count (not the /healthz sent on running out).
    if body and string.find(body, "access_token", 1, true) then
      ok = ok + 1
    end
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, used, stopped, sample = 0, 0, 0, 0, ""
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
    used = used + t:get("nextb") - 1
    stopped = stopped + t:get("exhausted")
    if sample == "" then sample = t:get("first_bad") end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT issuance ok=%d non200=%d bodies_used=%d threads_out_of_bodies=%d " ..
    "socket_errors=%d duration_s=%.2f ok_per_s=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    total_ok, total_bad, used, stopped,
    e.connect + e.read + e.write + e.timeout, secs, total_ok / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
  if sample ~= "" then
    io.write("first non-200 answer: " .. sample .. "\n")
  end
end
