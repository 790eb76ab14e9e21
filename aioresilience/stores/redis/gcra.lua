-- GCRA, mirroring aioresilience/_core/gcra.py (token bucket and leaky-bucket meter included).
-- p1 = emission interval (µs, may be fractional), p2 = burst (units admissible back to back).
-- State (base, k): a busy period began at server time `base` (integer µs) and k units were
-- admitted since, so TAT = base + k * interval. Counting units instead of adding intervals to
-- a µs epoch keeps the test exact: doubles near 1.7e15 resolve only 0.25 µs, and a running
-- sum of fractional intervals would drift by more than that.
local function take(key, now, cost, interval, burst)
  local v = redis.call('GET', key)
  local base, k = now, 0
  if v then base, k = struct.unpack('<dd', v) end
  local drained = (now - base) / interval          -- units drained since base
  if k <= drained then base, k, drained = now, 0, 0 end  -- idle: a fresh period
  local excess = k + cost - burst - drained          -- > 0: units that must drain first
  if excess <= 1e-9 then
    k = k + cost
    local ahead = (k - drained) * interval           -- TAT - now
    redis.call('SET', key, struct.pack('<dd', base, k), 'PX', px(ahead))
    return 1, math.max(0, math.floor(burst - (k - drained) + 1e-9)), 0, ahead
  end
  return 0, math.max(0, math.floor(burst - (k - drained) + 1e-9)), excess * interval,
    (k - drained) * interval
end

local function refund(key, now, cost, interval, burst, stamp)
  local v = redis.call('GET', key)
  if not v then return 0, 0, 0, 0 end
  local base, k = struct.unpack('<dd', v)
  -- Only what of it has not drained since it was admitted at `stamp` (its units end at
  -- stamp + cost * interval at the earliest): later admissions of the period are not its.
  local owed = math.min(cost, cost - (now - stamp) / interval)
  if base <= stamp and owed > 0 then  -- else that admission's period or units are gone
    k = math.max(0, k - owed)
    local drained = (now - base) / interval
    if k <= drained then
      redis.call('DEL', key)
    else
      redis.call('SET', key, struct.pack('<dd', base, k), 'PX', px((k - drained) * interval))
    end
  end
  return 0, 0, 0, 0
end
