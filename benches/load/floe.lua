-- wrk script of the load harness. FLOE_MODE selects what each request is:
--   get     the URL given to wrk (headers from -H)
--   token   POST FLOE_FORM to the token endpoint
--   commit  POST a set-properties commit to FLOE_PATH (%d = table number
--           modulo FLOE_TABLES); counts 409 and 5xx answers
-- done() prints one line: FLOE_RESULT {json}.
local mode = os.getenv("FLOE_MODE") or "get"
local auth = "Bearer " .. (os.getenv("FLOE_AUTH") or "")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  c409 = 0
  c5xx = 0
  tables = tonumber(os.getenv("FLOE_TABLES") or "1")
  path = os.getenv("FLOE_PATH") or "/"
  form = os.getenv("FLOE_FORM") or ""
end

if mode == "token" then
  request = function()
    return wrk.format("POST", nil, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, form)
  end
elseif mode == "commit" then
  request = function()
    counter = counter + 1
    local body = string.format(
      '{"requirements":[],"updates":[{"action":"set-properties","updates":{"k":"%d"}}]}', counter)
    return wrk.format("POST", string.format(path, counter % tables), {
      ["Content-Type"] = "application/json",
      ["Authorization"] = auth,
    }, body)
  end
  response = function(status, headers, body)
    if status == 409 then
      c409 = c409 + 1
    elseif status >= 500 then
      c5xx = c5xx + 1
    end
  end
end

function done(summary, latency, requests)
  local n409, n5xx = 0, 0
  for _, t in ipairs(threads) do
    n409 = n409 + (t:get("c409") or 0)
    n5xx = n5xx + (t:get("c5xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'FLOE_RESULT {"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,' ..
    '"p50":%d,"p99":%d,"p999":%d,"c409":%d,"c5xx":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), n409, n5xx))
end
