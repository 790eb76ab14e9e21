-- Shared by every limiter script (appended after the algorithm's `take` and `refund`).
-- KEYS: one key per decision, all in one Cluster slot. ARGV: five per key:
--   op ('t' take, 'r' refund), cost, p1, p2 (the algorithm's parameters), stamp (for refunds:
--   the server time of the admission being given back).
-- Returns five integers per key: admitted (1/0; -1 and a message on error), remaining,
-- retry_after (µs, rounded up), reset_after (µs, rounded up), and the server time (µs).
-- Time comes from the server (TIME), never from the clients, so client clock skew is moot.
-- (Writing after TIME needs effects replication: the default from Redis 5.)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local op = ARGV[a + 1]
  local cost, p1, p2 = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local ok, admitted, remaining, retry, reset
  if op == 't' then
    ok, admitted, remaining, retry, reset = pcall(take, KEYS[i], now, cost, p1, p2)
  else
    ok, admitted, remaining, retry, reset =
      pcall(refund, KEYS[i], now, cost, p1, p2, tonumber(ARGV[a + 5]))
  end
  if ok then
    out[#out + 1] = admitted
    out[#out + 1] = remaining
    out[#out + 1] = math.ceil(retry)
    out[#out + 1] = math.ceil(reset)
  else
    failed(out, admitted, 2)
  end
  out[#out + 1] = now
end
return out
