-- wrk script: POST /oauth/introspect of one token with the admin credential,
-- over and over. Arguments: the token, the admin credential. Prints one
-- RESULT line that bench/issuance.sh reads; answers other than 200 and
-- socket errors are counted.

local body, headers

function init(args)
  body = "token=" .. args[1]
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Bearer " .. args[2],
  }
end

function request()
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT introspection requests=%d non2xx=%d socket_errors=%d duration_s=%.2f " ..
    "req_per_s=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, secs,
    (summary.requests - e.status) / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
