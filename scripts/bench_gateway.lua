-- wrk script of scripts/bench-gateway: POSTs the bodies in BENCH_BODIES (one JSON document a line,
-- taken in turn) with the Authorization header BENCH_AUTHORIZATION, both from the environment, so
-- that no token is on a command line. A response counts as expected when its status is
-- BENCH_STATUS and, if BENCH_BODY_MATCH is set, its body matches that Lua pattern. The last line
-- printed is JSON for bench_gateway.py.

local bodies = {}
for line in string.gmatch(os.getenv("BENCH_BODIES") or "", "[^\n]+") do
  table.insert(bodies, line)
end
local headers = {
  ["Authorization"] = os.getenv("BENCH_AUTHORIZATION"),
  ["Content-Type"] = "application/json",
}
local expected_status = tonumber(os.getenv("BENCH_STATUS") or "201")
local body_match = os.getenv("BENCH_BODY_MATCH")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  if #bodies == 0 then error("BENCH_BODIES is empty") end
  requests, statuses, unexpected = {}, {}, 0
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", nil, headers, body)
  end
  -- Each thread starts elsewhere in the cycle, so that the mix holds for short runs too.
  next_request = id
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= expected_status or (body_match and not string.find(body, body_match)) then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local counts, unexpected_total = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
    unexpected_total = unexpected_total + (thread:get("unexpected") or 0)
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%d": %d', status, n)) end
  local errors = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, '
      .. '"statuses": {%s}, "unexpected": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    table.concat(parts, ", "), unexpected_total, errors.connect + errors.read + errors.write + errors.timeout))
end
