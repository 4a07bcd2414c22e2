-- wrk script of the subrelay benchmark harness (bench/run).
--
-- Sends POST requests with a prepared JSON body, rotating through the client API keys so that
-- the gateway looks up a different key on each request, and prints one machine-readable line
-- at the end: WRK_RESULT {json}.
--
-- Arguments after `--`: BODY_FILE KEYS_FILE PATH

local prepared = {}
local count = 0
local next_index = 0

function init(args)
   local body_file, keys_file, path = args[1], args[2], args[3]
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

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
end
