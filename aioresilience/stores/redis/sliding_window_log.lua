-- Sliding window log, mirroring aioresilience/_core/sliding_window_log.py: exact.
-- p1 = limit, p2 = window (µs). State: a sorted set of admitted units scored by server time;
-- an entry e leaves the window at e + window. Only admissions are recorded, one unique
-- member per unit ("<time>-<n>", ZADD NX, so equal timestamps never collapse into one).
local function take(key, now, cost, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - window))
  local n = redis.call('ZCARD', key)
  if n + cost <= limit then
    -- The quota comes back unit by unit, the oldest first: the reset is the next unit's.
    -- Read before PEXPIRE: a window of a millisecond or so can expire the key at once.
    local oldest = now
    if n > 0 then oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) end
    local added, seq = 0, redis.call('ZCOUNT', key, num(now), num(now))
    while added < cost do
      added = added + redis.call('ZADD', key, 'NX', num(now), string.format('%.0f-%d', now, seq))
      seq = seq + 1
    end
    redis.call('PEXPIRE', key, px(window))
    return 1, limit - n - cost, 0, oldest + window - now
  end
  -- The (n + cost - limit)-th oldest unit must leave the window first.
  local need = redis.call('ZRANGE', key, n + cost - limit - 1, n + cost - limit - 1, 'WITHSCORES')
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return 0, limit - n, tonumber(need[2]) + window - now, tonumber(oldest[2]) + window - now
end

local function refund(key, now, cost, limit, window, stamp)
  -- Units admitted at the same instant are interchangeable: remove any `cost` of them.
  local members = redis.call('ZRANGEBYSCORE', key, num(stamp), num(stamp), 'LIMIT', 0, cost)
  if #members > 0 then redis.call('ZREM', key, unpack(members)) end
  return 0, 0, 0, 0
end
