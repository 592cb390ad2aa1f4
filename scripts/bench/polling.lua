-- wrk script: each connection walks (or jumps between) polling cursors and checks every page
-- it gets continues the cursor it asked for: first seq = afterSeq + 1, `limit` events, lastSeq.
-- Run with as many threads as connections (-t N -c N), so each thread's responses come back
-- in the order of its requests and `asked` is the cursor of the page being checked.
-- args: path api_key total_events limit mode(walk|random) [lowest cursor for random, default 0]
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  path, key, total, limit, mode = args[1], args[2], tonumber(args[3]), tonumber(args[4]), args[5]
  lowest = tonumber(args[6] or "0")
  pages, bad, events, counted = 0, 0, 0, 0
  first_error = ""
  math.randomseed(tid * 7919)
  -- Threads start far apart so they do not read the same pages in lockstep.
  local slots = math.floor(total / limit)
  cursor = ((tid * 997) % slots) * limit
  headers = {["x-api-key"] = key}
end

function request()
  if mode == "random" then
    asked = math.random(lowest, total - limit)
  else
    asked = cursor
    cursor = cursor + limit
    if cursor >= total then cursor = 0 end
  end
  return wrk.format("GET", path .. "?afterSeq=" .. asked .. "&limit=" .. limit, headers)
end

function response(status, hdrs, body)
  pages = pages + 1
  local want_last = math.min(asked + limit, total)
  -- Plain finds anchored near the ends keep the client cheap: the first event's seq is near the
  -- start, lastSeq near the end. Counting every event scans the whole page, so only every 16th is counted.
  local at = string.find(body, '"seq":', 1, true)
  local first = at and tonumber(string.match(body, "^(%d+)", at + 6))
  local tail = string.find(body, '"lastSeq":', math.max(1, #body - 200), true)
  local last = tail and tonumber(string.match(body, "^(%d+)", tail + 10))
  local count = want_last - asked
  if pages % 16 == 0 then
    local _, found = string.gsub(body, ',"seq":', "")
    count = found
    counted = counted + 1
  end
  events = events + count
  if status ~= 200 or first ~= asked + 1 or last ~= want_last or count ~= want_last - asked then
    bad = bad + 1
    if first_error == "" then
      first_error = "status " .. status .. " afterSeq " .. asked .. " first " .. tostring(first) .. " last "
        .. tostring(last) .. " count " .. count
    end
  end
end

function done(summary, latency, requests)
  local pages_all, bad_all, events_all, err = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    pages_all = pages_all + t:get("pages")
    bad_all = bad_all + t:get("bad")
    events_all = events_all + t:get("events")
    if err == "" then err = t:get("first_error") end
  end
  io.write(string.format(
    'BENCH {"requests":%d,"seconds":%f,"p50_us":%d,"p99_us":%d,"pages":%d,"bad":%d,"events":%d,' ..
    '"socket_errors":%d,"first_error":"%s"}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), pages_all, bad_all,
    events_all, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    err))
end
