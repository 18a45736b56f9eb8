-- wrk script: POST one v2 REST JSON inference request per call, the body read from the file
-- named by the environment variable PEERS_BODY (run.sh: out/<model>/request.json, one row).
-- The body is the same for every server; wrk reports latency percentiles with --latency.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("PEERS_BODY")
if path == nil then
  error("PEERS_BODY must name the request body file")
end
local f = assert(io.open(path, "rb"))
wrk.body = f:read("*a")
f:close()

-- Count non-2xx answers so a failing server cannot look fast.
done = function(summary, latency, requests)
  local s = summary
  io.write(string.format("WRK_RESULT requests=%d duration_us=%d errors_status=%d errors_other=%d p50=%d p90=%d p99=%d\n",
    s.requests, s.duration, s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
