-- Circuit breaker state shared by every process, mirroring aioresilience/_core/breaker.py
-- (BreakerMachine) over a time-based window (TimeWindow's buckets). One hash per breaker.
-- KEYS: breaker keys (one per decision). ARGV, five per key:
--   op: 'a' admit, 'o' outcome, 'r' release a probe lease, 'm' manual control, 'g' read
--   flags: outcome: 1 failed + 2 slow; manual: 1 isolate, 2 disable, 3 reset, 4 trip
--   generation: the one the call was admitted in (outcomes and releases of older
--     generations no longer apply)
--   config: "threshold,rate,slow_rate,minimum_calls,window_us,buckets,probes,half_open_us"
--     (-1: rule off)
--   break_us: the break to use if this operation opens the circuit (the client draws it from
--     its schedule, jitter included, knowing the number of openings so far)
-- Returns six integers per key: admitted (1/0), state (0 closed, 1 open, 2 half-open,
-- 3 isolated, 4 disabled), generation, retry_after (µs), openings, server time (µs).
local CLOSED, OPEN, HALF_OPEN, ISOLATED, DISABLED = 0, 1, 2, 3, 4
local FIELDS = {'st', 'gen', 'cf', 'ou', 'opens', 'hs', 'pa', 'pd', 'pf', 'ps', 'w'}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function config(text)
  local c = {}
  for x in string.gmatch(text, '[^,]+') do c[#c + 1] = tonumber(x) end
  return {threshold = c[1], rate = c[2], slow_rate = c[3], minimum = c[4], window = c[5],
          buckets = c[6], probes = c[7], half_open = c[8]}
end

local function load(key, buckets)
  local v = redis.call('HMGET', key, unpack(FIELDS))
  local s = {}
  for i, name in ipairs(FIELDS) do s[name] = tonumber(v[i]) or 0 end
  s.w = {}  -- per bucket: epoch, calls, failures, slow
  if v[11] then
    local packed = {struct.unpack(string.rep('d', 4 * buckets), v[11])}
    for i = 1, 4 * buckets do s.w[i] = packed[i] end
  else
    for i = 1, 4 * buckets do s.w[i] = (i % 4 == 1) and -1 or 0 end
  end
  return s
end

-- Long enough to outlive the window, the break and the half-open time; a manual state
-- (isolated, disabled) is an operator's decision and is kept a day past its last use.
local function ttl_us(s, c)
  if s.st == ISOLATED or s.st == DISABLED then return 86400000000 end
  return math.max(c.window, c.half_open, s.ou - now, 0) * 2 + 60000000
end

local function save(key, s, c)
  redis.call('HSET', key, 'st', s.st, 'gen', s.gen, 'cf', s.cf,
    'ou', string.format('%.17g', s.ou), 'opens', s.opens, 'hs', string.format('%.17g', s.hs),
    'pa', s.pa, 'pd', s.pd, 'pf', s.pf, 'ps', s.ps,
    'w', struct.pack(string.rep('d', 4 * c.buckets), unpack(s.w)))
  redis.call('PEXPIRE', key, math.ceil(ttl_us(s, c) / 1000))
end

local function window_totals(s, c)
  local width = c.window / c.buckets
  local oldest = math.floor(now / width) - c.buckets + 1
  local calls, failures, slow = 0, 0, 0
  for b = 0, c.buckets - 1 do
    if s.w[4 * b + 1] >= oldest then
      calls, failures, slow = calls + s.w[4 * b + 2], failures + s.w[4 * b + 3], slow + s.w[4 * b + 4]
    end
  end
  return calls, failures, slow
end

local function window_record(s, c, failed, slow)
  local epoch = math.floor(now / (c.window / c.buckets))
  local b = 4 * (epoch % c.buckets)
  if s.w[b + 1] ~= epoch then
    s.w[b + 1], s.w[b + 2], s.w[b + 3], s.w[b + 4] = epoch, 0, 0, 0
  end
  s.w[b + 2], s.w[b + 3], s.w[b + 4] = s.w[b + 2] + 1, s.w[b + 3] + failed, s.w[b + 4] + slow
end

local function enter(s, state) s.st, s.gen = state, s.gen + 1 end

local function open(s, break_us, at)
  s.opens, s.ou = s.opens + 1, (at or now) + break_us
  enter(s, OPEN)
end

local function close(s, c)
  s.opens, s.cf = 0, 0
  for i = 1, 4 * c.buckets do s.w[i] = (i % 4 == 1) and -1 or 0 end
  enter(s, CLOSED)
end

local function probes_failed(s, c, final)
  if c.rate < 0 and s.pf > 0 then return true end
  if not final then return c.rate >= 0 and s.pf / c.probes >= c.rate end
  return (c.rate >= 0 and s.pf / s.pd >= c.rate) or (c.slow_rate >= 0 and s.ps / s.pd >= c.slow_rate)
end

local function expire(s, c, break_us)
  if s.st == HALF_OPEN and now >= s.hs + c.half_open then
    -- Probes that never finished: the circuit re-opened at that deadline (BreakerMachine.expire).
    open(s, break_us, s.hs + c.half_open)
  end
end

local function admit(s, c, break_us)
  if s.st == CLOSED or s.st == DISABLED then return 1, 0 end
  if s.st == ISOLATED then return 0, -1 end
  expire(s, c, break_us)
  if s.st == OPEN then
    if now < s.ou then return 0, s.ou - now end
    s.hs, s.pa, s.pd, s.pf, s.ps = now, 0, 0, 0, 0
    enter(s, HALF_OPEN)
  end
  if s.pa < c.probes then s.pa = s.pa + 1; return 1, 0 end
  -- Refused while the probes run: come back after as long as they have run so far (at least
  -- 1 ms, never past the watchdog), as BreakerMachine.wait says.
  return 0, math.max(1000, math.min(now - s.hs, s.hs + c.half_open - now))
end

local function outcome(s, c, failed, slow, break_us)
  if s.st == CLOSED then
    if failed == 1 then s.cf = s.cf + 1 else s.cf = 0 end
    if failed == 1 and c.threshold >= 0 and s.cf >= c.threshold then open(s, break_us); return end
    if c.rate < 0 and c.slow_rate < 0 then return end
    -- The rates are judged after every outcome, success or not: the window's contents
    -- decide, never their order (resilience4j's rule, as BreakerMachine.record).
    window_record(s, c, failed, slow)
    local calls, failures, slows = window_totals(s, c)
    if calls >= c.minimum and calls > 0 and ((c.rate >= 0 and failures / calls >= c.rate)
        or (c.slow_rate >= 0 and slows / calls >= c.slow_rate)) then
      open(s, break_us)
    end
  elseif s.st == HALF_OPEN then
    s.pd, s.pf, s.ps = s.pd + 1, s.pf + failed, s.ps + slow
    if probes_failed(s, c, false) then open(s, break_us)
    elseif s.pd >= c.probes then
      if probes_failed(s, c, true) then open(s, break_us) else close(s, c) end
    end
  end
end

local function apply(key, op, flags, gen, c, break_us)
  local s = load(key, c.buckets)
  local before = s.gen
  local admitted, retry = 0, 0
  if op == 'a' then
    admitted, retry = admit(s, c, break_us)
  elseif op == 'o' then
    expire(s, c, break_us)  -- a probe ending past the bound: the circuit re-opened first
    if gen == s.gen then outcome(s, c, flags % 2, math.floor(flags / 2) % 2, break_us) end
  elseif op == 'r' then
    if gen == s.gen and s.st == HALF_OPEN and s.pa > 0 then s.pa = s.pa - 1 end
  elseif op == 'm' then
    if flags == 1 then enter(s, ISOLATED)
    elseif flags == 2 then enter(s, DISABLED)
    elseif flags == 3 then close(s, c)
    else s.opens, s.ou = s.opens + 1, now + break_us; enter(s, OPEN) end
  end
  if op == 'o' or op == 'r' or op == 'm' or admitted == 1 or s.gen ~= before then
    save(key, s, c)
  elseif redis.call('EXISTS', key) == 1 then  -- a refused admission: keep the state alive
    redis.call('PEXPIRE', key, math.ceil(ttl_us(s, c) / 1000))
  end
  if s.st == OPEN and retry == 0 then retry = s.ou - now end
  return admitted, s.st, s.gen, retry, s.opens
end

local out = {}
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local ok, admitted, state, gen, retry, opens = pcall(apply, KEYS[i], ARGV[a + 1],
    tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), config(ARGV[a + 4]), tonumber(ARGV[a + 5]))
  if ok then
    out[#out + 1] = admitted
    out[#out + 1] = state
    out[#out + 1] = gen
    out[#out + 1] = math.ceil(retry)
    out[#out + 1] = opens
  else
    failed(out, admitted, 3)
  end
  out[#out + 1] = now
end
return out
