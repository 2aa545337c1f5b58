-- wrk script for a reference GET endpoint: prints one RESULT line that
-- bench/issuance.sh reads, with non-2xx answers and socket errors counted.
-- Other scripts load it (dofile) for that line, with `label` set first.

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT %s requests=%d non2xx=%d socket_errors=%d duration_s=%.2f " ..
    "req_per_s=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    label or "reference", summary.requests, e.status, e.connect + e.read + e.write + e.timeout, secs,
    (summary.requests - e.status) / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
