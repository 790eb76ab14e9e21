-- Fixed window counter, mirroring aioresilience/_core/fixed_window.py.
-- p1 = limit, p2 = window (µs). State "index count": window `index` has admitted `count`.
local function take(key, now, cost, limit, window)
  local index = math.floor(now / window)
  local s = load(key)
  local count = 0
  if s and s[1] == index then count = s[2] end
  local left = (index + 1) * window - now            -- until this window ends
  if count + cost <= limit then
    store(key, left, index, count + cost)
    return 1, limit - count - cost, 0, left
  end
  return 0, limit - count, left, left  -- any cost <= limit fits in the next window
end

local function refund(key, now, cost, limit, window, stamp)
  local index = math.floor(stamp / window)
  local s = load(key)
  if s and s[1] == index then
    store(key, (index + 1) * window - now, index, math.max(0, s[2] - cost))
  end
  return 0, 0, 0, 0
end
