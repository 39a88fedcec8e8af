-- wrk script: POST one non-streamed /api/chat, as ollama-python sends it.
--
--   wrk -t1 -c50 -d10s --latency -s bench/gateway.lua http://127.0.0.1:PORT/api/chat
--
-- Extra headers (for nginx: the node's Host) come after "--" as name=value.
-- At the end one line "BENCH_JSON {...}" gives exact counts and percentiles (us).

local body = '{"model":"llama3.2:3b","messages":[{"role":"user","content":'
  .. '"Why is the sky blue?"}],"stream":false}'

function init(args)
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  for _, pair in ipairs(args) do
    local name, value = pair:match("([^=]+)=(.*)")
    if name then
      wrk.headers[name] = value
    end
  end
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"mean_us":%.1f,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, errors.status, errors.connect,
    errors.read, errors.write, errors.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max
  ))
end
