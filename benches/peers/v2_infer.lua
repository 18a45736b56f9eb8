-- wrk script: POST one v2 REST JSON inference request (one row of the iris model) per call.
-- The body is the same for every server; wrk reports latency percentiles with --latency.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'

-- Count non-2xx answers so a failing server cannot look fast.
done = function(summary, latency, requests)
  local s = summary
  io.write(string.format("WRK_RESULT requests=%d duration_us=%d errors_status=%d errors_other=%d p50=%d p90=%d p99=%d\n",
    s.requests, s.duration, s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
