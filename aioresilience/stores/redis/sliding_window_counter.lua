-- Sliding window counter, mirroring aioresilience/_core/sliding_window_counter.py
-- (Cloudflare's estimate: prev * (1 - elapsed fraction of the current window) + curr).
-- p1 = limit, p2 = window (µs). State "index prev curr": counts of windows index-1 and index.
local function roll(s, index)
  if not s or s[1] < index - 1 then return 0, 0 end
  if s[1] == index - 1 then return s[3], 0 end
  return s[2], s[3]
end

local function take(key, now, cost, limit, window)
  local index = math.floor(now / window)
  local prev, curr = roll(load(key), index)
  local room = limit - curr - cost
  local reset = (index + 2) * window - now
  local estimate = prev * (index + 1 - now / window) + curr
  if room >= 0 and (prev <= room or (index + 1 - room / prev) * window <= now) then
    store(key, reset, index, prev, curr + cost)
    return 1, math.max(0, math.floor(limit - estimate - cost + 1e-9)), 0, reset
  end
  -- The earliest instant the estimate leaves room, as _earliest computes it.
  local at
  if room >= 0 then
    at = (index + 1 - room / prev) * window
  else  -- not in this window: in the next, where this window's count is the previous one
    local next_room = limit - cost
    if curr <= next_room then at = (index + 1) * window
    else at = (index + 2 - next_room / curr) * window end
  end
  local remaining = math.max(0, math.floor(limit - estimate + 1e-9))
  if prev == 0 and curr == 0 then reset = 0 end
  return 0, remaining, at - now, reset
end

local function refund(key, now, cost, limit, window, stamp)
  local s = load(key)
  if s then
    local at = math.floor(stamp / window)
    if at == s[1] then s[3] = math.max(0, s[3] - cost)
    elseif at == s[1] - 1 then s[2] = math.max(0, s[2] - cost) end
    store(key, (s[1] + 2) * window - now, s[1], s[2], s[3])
  end
  return 0, 0, 0, 0
end
