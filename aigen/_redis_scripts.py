"""The Lua scripts of `aigen.redis.RedisStore`: each store operation as one atomic step.

Each script is the `MemoryStore` method of the same name (aigen/_memory_store.py) written
for Redis, on one hash per bucket or circuit, so a Redis Cluster never needs two slots.

Time. ARGV[1] is the caller's `now`, or `""` to read the server's `TIME`. Processes on
several hosts compare times with each other (a slot, a hold, a cool-down), and hosts'
clocks drift apart; Redis' own clock is one clock for all of them. A hold arrives as a
length (ARGV[2]) instead of an instant for the same reason: it is added to that one clock.

Numbers are stored and answered as `%.17g` strings: Lua's own `tostring` keeps 14
digits (a tenth of a millisecond on an epoch time), and Redis truncates a Lua number it
answers to an integer.
"""

from __future__ import annotations

__all__ = ["ADMIT", "CHANGE_RATE", "HOLD", "RECORD", "REFUND", "RESERVE"]

# The shared start of every script: the clock, number formatting, the key's expiry.
_PRELUDE = """
local function clock(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
local function expire(key, ttl, horizon)
  -- Unused state expires, but never before the instant it still speaks for.
  redis.call('PEXPIRE', key, math.ceil((ttl + math.max(0, horizon)) * 1000))
end
"""

_BUCKET = """
local function bucket(key, at, default_rate)
  local b = redis.call('HMGET', key, 'arrival', 'rate', 'held')
  return tonumber(b[1]) or at, tonumber(b[2]) or default_rate, tonumber(b[3]) or 0
end
local function save(key, arrival, rate, held, now, ttl)
  redis.call('HSET', key, 'arrival', num(arrival), 'rate', num(rate), 'held', num(held))
  expire(key, ttl, math.max(arrival, held) - now)
end
"""

# KEYS[1] bucket; ARGV: now, burst, default_rate, max_wait ('' none), cost, ttl. Answers
# the wait in seconds; a wait over max_wait takes nothing.
RESERVE = (
    _PRELUDE
    + _BUCKET
    + """
local now = clock(ARGV[1])
local burst, default_rate = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_wait, cost, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local arrival, rate, held = bucket(KEYS[1], now, default_rate)
local interval = 60.0 / rate
local tolerance = interval * (burst - 1)
local start = math.max(now, held)
arrival = math.max(arrival, start)
local wait = math.max(0, arrival + interval * (cost - 1) - tolerance - now, start - now)
if max_wait == nil or wait <= max_wait then arrival = arrival + interval * cost end
save(KEYS[1], arrival, rate, held, now, ttl)
return num(wait)
"""
)

# KEYS[1] bucket; ARGV: now, default_rate, cost, ttl.
REFUND = (
    _PRELUDE
    + _BUCKET
    + """
local now = clock(ARGV[1])
local default_rate, cost, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local arrival, rate, held = bucket(KEYS[1], now, default_rate)
-- Never earlier than now: a slot in the past is free already.
arrival = math.max(now, arrival - 60.0 / rate * cost)
save(KEYS[1], arrival, rate, held, now, ttl)
return 1
"""
)

# KEYS[1] bucket; ARGV: now ('' the server's), the hold's length from now, default_rate,
# ttl. With the caller's clock the length is its `until - now`, the same instant.
HOLD = (
    _PRELUDE
    + _BUCKET
    + """
local now = clock(ARGV[1])
local untl = now + tonumber(ARGV[2])
local default_rate, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local arrival, rate, held = bucket(KEYS[1], untl, default_rate)
save(KEYS[1], arrival, rate, math.max(held, untl), now, ttl)
return 1
"""
)

# KEYS[1] bucket; ARGV: now, factor, step, floor, ceiling ('' none), default_rate, ttl.
# Answers the new rate.
CHANGE_RATE = (
    _PRELUDE
    + """
local now = clock(ARGV[1])
local factor, step, floor = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ceiling, default_rate, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate')) or default_rate
rate = math.max(floor, rate * factor + step)
if ceiling ~= nil then rate = math.min(ceiling, rate) end
redis.call('HSET', KEYS[1], 'rate', num(rate))
local b = redis.call('HMGET', KEYS[1], 'arrival', 'held')
local horizon = math.max(tonumber(b[1]) or now, tonumber(b[2]) or 0) - now
expire(KEYS[1], ttl, horizon)
return num(rate)
"""
)

# KEYS[1] circuit; ARGV: now, reset_timeout, ttl. Answers {decision, failures, reopens_in}.
# A probe whose outcome never came (its process died) is given up after another
# reset_timeout, so one lost process cannot keep the circuit half open for everyone.
ADMIT = (
    _PRELUDE
    + """
local now, reset, ttl = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local c = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened', 'probe', 'probe_at')
local state, failures = c[1] or 'closed', tonumber(c[2]) or 0
if state == 'closed' then return {'go', '0', '0'} end
local waited = now - (tonumber(c[3]) or 0)
if state == 'open' and waited >= reset then
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state, 'probe', '0')
  c[4] = '0'
end
if state == 'half_open' then
  local lost = now - (tonumber(c[5]) or 0) >= reset
  if c[4] == '1' and not lost then return {'probing', tostring(failures), '0'} end
  redis.call('HSET', KEYS[1], 'probe', '1', 'probe_at', num(now))
  expire(KEYS[1], ttl, reset)
  return {'probe', tostring(failures), '0'}
end
return {'open', tostring(failures), num(math.max(0, reset - waited))}
"""
)

# KEYS[1] circuit; ARGV: now, outcome, probe ('1' or '0'), failure_threshold, ttl.
RECORD = (
    _PRELUDE
    + """
local now, outcome, probe = clock(ARGV[1]), ARGV[2], ARGV[3] == '1'
local threshold, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if probe then redis.call('HSET', KEYS[1], 'probe', '0') end
if outcome == 'nothing' then
  -- Held back or cancelled: the provider said nothing.
  if probe then expire(KEYS[1], ttl, 0) end
  return 1
end
if outcome == 'success' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', '0')
else
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if probe or failures >= threshold then
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened', num(now))
  elseif redis.call('HGET', KEYS[1], 'state') == false then
    redis.call('HSET', KEYS[1], 'state', 'closed')
  end
end
expire(KEYS[1], ttl, 0)
return 1
"""
)
