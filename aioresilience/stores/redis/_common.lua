-- Helpers shared by the limiter scripts (prepended to each).
-- State values are packed doubles (struct.pack '<d...'): exact, and several times cheaper in
-- Lua than formatting and parsing decimal text. (Lua's tostring keeps only 14 digits, too
-- few for a µs epoch, so text would also need string.format with 17 digits.)
local function num(x) return string.format('%.17g', x) end
-- A PX in whole milliseconds, at least 1 (0 or less is an error, or an immortal key).
local function px(us)
  local ms = math.ceil(us / 1000)
  if ms < 1 then ms = 1 end
  return ms
end
-- One bad key (a foreign value of the wrong type, say) fails only its own operation: -1 and
-- the message, then `zeros` zeros to fill the reply's width (before the server time).
local function failed(out, err, zeros)
  out[#out + 1] = -1
  out[#out + 1] = type(err) == 'table' and (err.err or 'error') or tostring(err)
  for _ = 1, zeros do out[#out + 1] = 0 end
end
