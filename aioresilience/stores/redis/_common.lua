-- Helpers shared by the limiter scripts (prepended to each).
-- Lua's tostring keeps 14 digits, too few for a µs epoch plus a fraction: format with 17.
local function num(x) return string.format('%.17g', x) end
-- A PX in whole milliseconds, at least 1 (0 or less is an error, or an immortal key).
local function px(us)
  local ms = math.ceil(us / 1000)
  if ms < 1 then ms = 1 end
  return ms
end
-- Space-separated numbers stored in one string value; nil when the key is missing.
local function load(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local fields = {}
  for f in string.gmatch(v, '%S+') do fields[#fields + 1] = tonumber(f) end
  return fields
end
local function store(key, ttl_us, ...)
  local parts = {}
  for i, x in ipairs({...}) do parts[i] = num(x) end
  redis.call('SET', key, table.concat(parts, ' '), 'PX', px(ttl_us))
end
