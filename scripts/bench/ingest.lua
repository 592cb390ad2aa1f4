-- wrk script: POST the same batch (events without ids, so each POST appends new events)
-- and count the 201s; the suite then checks the log grew by exactly 201s x batch.
-- args: path admin_token body_file
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[3], "rb"))
  wrk.method = "POST"
  wrk.path = args[1]
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["authorization"] = "Bearer " .. args[2]
  wrk.headers["content-type"] = "application/json"
  created, failed = 0, 0
  first_error = ""
end

function response(status, hdrs, body)
  if status == 201 then
    created = created + 1
  else
    failed = failed + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body, 1, 120):gsub('"', "'") end
  end
end

function done(summary, latency, requests)
  local ok, bad, err = 0, 0, ""
  for _, t in ipairs(threads) do
    ok = ok + t:get("created")
    bad = bad + t:get("failed")
    if err == "" then err = t:get("first_error") end
  end
  io.write(string.format(
    'BENCH {"requests":%d,"seconds":%f,"p50_us":%d,"p99_us":%d,"created":%d,"bad":%d,"socket_errors":%d,' ..
    '"first_error":"%s"}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), ok, bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, err))
end
