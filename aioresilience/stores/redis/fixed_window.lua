-- Fixed window counter, mirroring aioresilience/_core/fixed_window.py.
-- p1 = limit, p2 = window (µs). State (index, count): window `index` has admitted `count`.
local function take(key, now, cost, limit, window)
  local index = math.floor(now / window)
  local v = redis.call('GET', key)
  local count = 0
  if v then
    local at, n = struct.unpack('<dd', v)
    if at == index then count = n end
  end
  local left = (index + 1) * window - now            -- until this window ends
  if count + cost <= limit then
    redis.call('SET', key, struct.pack('<dd', index, count + cost), 'PX', px(left))
    return 1, limit - count - cost, 0, left
  end
  return 0, limit - count, left, left  -- any cost <= limit fits in the next window
end

local function refund(key, now, cost, limit, window, stamp)
  local index = math.floor(stamp / window)
  local v = redis.call('GET', key)
  if v then
    local at, n = struct.unpack('<dd', v)
    if at == index then
      redis.call('SET', key, struct.pack('<dd', index, math.max(0, n - cost)),
        'PX', px((index + 1) * window - now))
    end
  end
  return 0, 0, 0, 0
end
