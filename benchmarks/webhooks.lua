-- wrk script: POST pre-signed webhook bodies, each once, and account for every answer.
--
-- Run with as many threads as connections (one connection per thread): a thread's
-- requests and responses then alternate strictly, so the script knows which body each
-- answer belongs to. Thread k sends bodies k, k+T, k+2T, ... of the bodies file, in order.
--
-- Arguments (after `--`): bodies_prefix out_file stop_after_seconds rate_per_second threads
--   stop_after_seconds: each thread stops itself right after an answer once this much
--                       time has passed, so no request is left in flight at the end.
--   rate_per_second:    0 for as fast as answers come; otherwise pace the whole load
--                       at this rate (each thread sends on its own schedule).
-- Thread k reads <bodies_prefix><k>.tsv, one request per line: "<signature>\t<body>";
-- its j-th line is body k + j*T of the whole load.
-- `done` writes a JSON summary to out_file.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread state: globals, so that `done` can read them with thread:get().
requests = {}
count = 0
sent = 0          -- bodies sent so far by this thread
answered = 0      -- bodies answered (any status)
ok = 0            -- answered 200
failed = ""       -- "index:status," for each answer other than 200
unanswered = ""   -- indices sent but never answered (a connection failed)
waiting = false   -- a request is in flight
t_first = 0
t_last = 0
stop_after = 0
interval = 0
t_next = 0
exhausted = 0
nthreads = 1
out_file = ""

function init(args)
  local bodies_file = args[1] .. id .. ".tsv"
  out_file = args[2]
  stop_after = tonumber(args[3])
  local rate = tonumber(args[4] or "0")
  nthreads = tonumber(args[5] or "1")
  local f = assert(io.open(bodies_file, "r"))
  for line in f:lines() do
    local tab = string.find(line, "\t", 1, true)
    local headers = {}
    headers["Content-Type"] = "application/json"
    headers["X-Hub-Signature-256"] = string.sub(line, 1, tab - 1)
    count = count + 1
    requests[count] = wrk.format("POST", "/webhooks/instagram", headers, string.sub(line, tab + 1))
  end
  f:close()
  if rate > 0 then
    interval = nthreads / rate
  end
end

function delay()
  if interval == 0 then
    return 0
  end
  local wait = t_next - now()
  if wait <= 0 then
    return 0
  end
  return wait * 1000
end

verified = false

function request()
  if id == 0 and not verified then
    -- wrk calls request() once on thread 0 before the load starts, to check the
    -- request; that call sends nothing, so it must not count.
    verified = true
    return requests[1]
  end
  if waiting then
    -- The connection broke before the answer came; the body's fate is unknown.
    unanswered = unanswered .. (id + (sent - 1) * nthreads) .. ","
  end
  local t = now()
  if t_first == 0 then
    t_first = t
    t_next = t
  end
  if interval > 0 then
    t_next = t_next + interval
  end
  sent = sent + 1
  waiting = true
  if sent > count then
    -- Out of distinct bodies: send the last one again; the harness reports it.
    exhausted = exhausted + 1
    return requests[count]
  end
  return requests[sent]
end

function response(status, headers, body)
  waiting = false
  answered = answered + 1
  t_last = now()
  if status == 200 then
    ok = ok + 1
  else
    failed = failed .. (id + (sent - 1) * nthreads) .. ":" .. status .. ","
  end
  if t_last - t_first >= stop_after or sent >= count then
    wrk.thread:stop()
  end
end

function done(summary, latency, _requests)
  local out_file = nil
  local parts = {}
  for _, thread in ipairs(threads) do
    out_file = thread:get("out_file")
    local unanswered = thread:get("unanswered")
    if thread:get("waiting") then
      -- In flight when the load was cut off.
      unanswered = unanswered .. (thread:get("id") + (thread:get("sent") - 1) * thread:get("nthreads")) .. ","
    end
    table.insert(parts, string.format(
      '{"id":%d,"sent":%d,"answered":%d,"ok":%d,"failed":"%s","unanswered":"%s",'
        .. '"t_first":%.6f,"t_last":%.6f,"exhausted":%d}',
      thread:get("id"), thread:get("sent"), thread:get("answered"), thread:get("ok"),
      thread:get("failed"), unanswered, thread:get("t_first"),
      thread:get("t_last"), thread:get("exhausted")))
  end
  local pct = {}
  for _, p in ipairs({50, 90, 99, 99.9}) do
    table.insert(pct, string.format('"%s":%d', tostring(p), latency:percentile(p)))
  end
  local f = assert(io.open(out_file, "w"))
  f:write(string.format(
    '{"threads":[%s],"latency_us":{%s},"latency_max_us":%d,"requests":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    table.concat(parts, ","), table.concat(pct, ","), latency.max, summary.requests,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  f:close()
end
