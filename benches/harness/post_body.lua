-- wrk script: POST one prebuilt multipart body on every request, then print
-- one machine-readable summary line for scripts/bench.sh.
--
-- Environment: BENCH_BODY_FILE (the body), BENCH_BOUNDARY (its multipart
-- boundary) and BENCH_API_KEY (the x-api-key header value).

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

wrk.method = "POST"
wrk.body = read_file(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set"))
wrk.headers["Content-Type"] = "multipart/form-data; boundary="
  .. assert(os.getenv("BENCH_BOUNDARY"), "BENCH_BOUNDARY is not set")
wrk.headers["x-api-key"] = assert(os.getenv("BENCH_API_KEY"), "BENCH_API_KEY is not set")

-- Latencies are in microseconds. wrk counts replies with a status above 399
-- as status errors.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "wrk requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
