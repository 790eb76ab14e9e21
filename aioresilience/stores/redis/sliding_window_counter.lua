-- Sliding window counter, mirroring aioresilience/_core/sliding_window_counter.py
-- (Cloudflare's estimate: prev * (1 - elapsed fraction of the current window) + curr).
-- p1 = limit, p2 = window (µs). State (index, prev, curr): counts of windows index-1, index.
local function counts(key, index)
  local v = redis.call('GET', key)
  if not v then return 0, 0 end
  local at, prev, curr = struct.unpack('<ddd', v)
  if at == index then return prev, curr end
  if at == index - 1 then return curr, 0 end
  return 0, 0
end

-- The earliest instant `cost` fits, as _earliest computes it (prev * (1 - f) <= room).
local function earliest(now, index, prev, curr, cost, limit, window)
  local room = limit - curr - cost
  if room >= 0 then
    if prev <= room then return now end
    return (index + 1 - room / prev) * window
  end
  -- Not in this window: in the next, where this window's count is the previous one.
  local next_room = limit - cost
  if curr <= next_room then return (index + 1) * window end
  return (index + 2 - next_room / curr) * window
end

-- The quota comes back gradually as the previous window's weight decays: the reset stated
-- is the time one more unit fits than `remaining` (0 when nothing is counted).
local function reset_after(now, index, prev, curr, remaining, limit, window)
  if remaining >= limit or (prev == 0 and curr == 0) then return 0 end
  return math.max(0, earliest(now, index, prev, curr, remaining + 1, limit, window) - now)
end

-- Whether `cost` fits now: take's test.
local function fits(now, index, prev, curr, cost, limit, window)
  local room = limit - curr - cost
  return room >= 0 and (prev <= room or (index + 1 - room / prev) * window <= now)
end

-- The units that fit now: the estimate's, less any its rounding (or the tolerance) states
-- beyond take's own test (else a decision would state r=1, and the next be refused).
local function remaining_now(now, index, prev, curr, limit, window)
  local estimate = prev * (index + 1 - now / window) + curr
  local remaining = math.max(0, math.floor(limit - estimate + 1e-9))
  while remaining > 0 and not fits(now, index, prev, curr, remaining, limit, window) do
    remaining = remaining - 1
  end
  return remaining
end

local function take(key, now, cost, limit, window)
  local index = math.floor(now / window)
  local prev, curr = counts(key, index)
  if fits(now, index, prev, curr, cost, limit, window) then
    redis.call('SET', key, struct.pack('<ddd', index, prev, curr + cost),
      'PX', px((index + 2) * window - now))
    local remaining = remaining_now(now, index, prev, curr + cost, limit, window)
    return 1, remaining, 0, reset_after(now, index, prev, curr + cost, remaining, limit, window)
  end
  local remaining = remaining_now(now, index, prev, curr, limit, window)
  return 0, remaining, earliest(now, index, prev, curr, cost, limit, window) - now,
    reset_after(now, index, prev, curr, remaining, limit, window)
end

local function refund(key, now, cost, limit, window, stamp)
  local v = redis.call('GET', key)
  if v then
    local index, prev, curr = struct.unpack('<ddd', v)
    local at = math.floor(stamp / window)
    if at == index then curr = math.max(0, curr - cost)
    elseif at == index - 1 then prev = math.max(0, prev - cost) end
    redis.call('SET', key, struct.pack('<ddd', index, prev, curr),
      'PX', px((index + 2) * window - now))
  end
  return 0, 0, 0, 0
end
