-- wrk script for the serving benchmark: POST the body in $BODY_FILE, print one JSON line at the end.
-- Kept to request setup and a `done` summary: a per-response Lua callback would cost wrk CPU that the
-- server, sharing the same two cores, needs.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()

-- $THINK_MS (optional, the mirroring mode): each connection pauses a random time between its requests,
-- exponential with this mean in whole milliseconds, so the server runs below saturation and p99 measures
-- latency rather than a queue of 16 clients waiting on a saturated process.
local think = tonumber(os.getenv("THINK_MS") or "")
if think and think > 0 then
  function delay()
    return -math.log(1 - math.random()) * think
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "errors": %d, "rps": %.3f, "p50_ms": %.4f, "p99_ms": %.4f, "non_2xx": %d}\n',
    summary.requests, e.connect + e.read + e.write + e.timeout + e.status, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.status))
end
