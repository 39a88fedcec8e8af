-- wrk script: POST heartbeats as the sollol client sends them (DESIGN.md §6), each
-- for one of N pre-registered applications chosen at random per request.
--
--   wrk -t1 -c20 -d15s --latency -s bench/heartbeat.lua \
--       http://127.0.0.1:PORT/api/applications/heartbeat -- 200 bench-
--
-- Arguments after "--": the number of applications (200) and the app_id prefix
-- ("bench-"). The body is byte for byte what bench/paced.py's heartbeat_body()
-- makes and what bench/run.py registers: about 148 bytes, the five fields, the
-- same metadata as at registration (the common "nothing changed" heartbeat).
-- At the end one line "BENCH_JSON {...}" gives exact counts and percentiles (us).

local requests = {}
local count = 200

local function heartbeat_body(index, prefix)
  return string.format(
    '{"app_id":"%s%d","name":"Bench App %d","router_type":"HybridRouter",'
      .. '"version":"1.4.2","metadata":{"env":"bench","host":"worker-%03d","gpus":2}}',
    prefix, index, index, index % 1000
  )
end

function init(args)
  count = tonumber(args[1]) or 200
  local prefix = args[2] or "bench-"
  local headers = { ["Content-Type"] = "application/json" }
  for index = 0, count - 1 do
    requests[index + 1] = wrk.format("POST", nil, headers, heartbeat_body(index, prefix))
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(count)]
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
