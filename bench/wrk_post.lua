-- wrk script of the subrelay benchmark harness (bench/run).
--
-- Sends POST requests with a prepared JSON body, rotating through the client API keys so that
-- the gateway looks up a different key on each request, checks every answer's body, and prints
-- one machine-readable line at the end: WRK_RESULT {json}.
--
-- Arguments after `--`: BODY_FILE KEYS_FILE PATH SHAPE MARKER...
--   SHAPE: `json` (the body, after leading keepalive whitespace, is one object: `{` ... `}`) or
--   `sse` (the body ends with a blank line); every MARKER must occur in the body (plain text).
-- A body that fails a check counts in `bad_body`, and the first one is kept as `bad_sample`.
-- (wrk takes the latency before calling `response`, so checking costs no latency; it only
-- spends client time between requests.)

local prepared = {}
local count = 0
local next_index = 0
local shape = nil
local markers = {}
bad_body = 0
bad_sample = ""

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local body_file, keys_file, path = args[1], args[2], args[3]
   shape = args[4]
   for i = 5, #args do
      markers[#markers + 1] = args[i]
   end
   local f = assert(io.open(body_file, "rb"))
   local body = f:read("*a")
   f:close()
   for key in io.lines(keys_file) do
      count = count + 1
      prepared[count] = wrk.format("POST", path, {
         ["Content-Type"] = "application/json",
         ["Authorization"] = "Bearer " .. key,
      }, body)
   end
   -- Threads start at different keys.
   next_index = math.random(count) - 1
end

function request()
   next_index = next_index % count + 1
   return prepared[next_index]
end

local function body_ok(status, body)
   if status ~= 200 or body == nil then
      return false
   end
   if shape == "json" then
      if not (string.match(body, "^%s*{") and string.match(body, "}%s*$")) then
         return false
      end
   elseif shape == "sse" then
      if string.sub(body, -2) ~= "\n\n" then
         return false
      end
   else
      return false
   end
   for _, marker in ipairs(markers) do
      if not string.find(body, marker, 1, true) then
         return false
      end
   end
   return true
end

function response(status, headers, body)
   if not body_ok(status, body) then
      bad_body = bad_body + 1
      if bad_sample == "" then
         bad_sample = string.sub(string.format("%d %s", status, body or ""), 1, 200)
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local bad, sample = 0, ""
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("bad_body") or 0)
      local s = thread:get("bad_sample") or ""
      if sample == "" then
         sample = s
      end
   end
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"bad_body":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout, bad,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
   -- The sample goes on its own line: it is not JSON-escaped.
   if sample ~= "" then
      io.write("WRK_BAD_SAMPLE " .. string.gsub(sample, "[\r\n]", " ") .. "\n")
   end
end
