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
