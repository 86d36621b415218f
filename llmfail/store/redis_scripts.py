"""The Lua scripts of `RedisStore`: every read-modify-write of shared state, run atomically on the server.

Why scripts: a Redis transaction (MULTI/EXEC) cannot read and then decide, and
WATCH-retry loops turn a burst of failures on one model into a storm of
retries. A script runs alone on the server, so "read the state, apply the bench
rule, write it back" is one indivisible step and one round trip.

Every script decides with the caller's `now` (already corrected for the host's
clock skew by `RedisStore`), never with key expiry: TTLs only give memory back,
so virtual time (`simulate`, property tests) behaves exactly like wall time.

Calling convention: KEYS[1] is the namespace's version key (`{llmfail:NS}:ver`),
which routes the script to the namespace's slot on Redis Cluster; ARGV[1] is the
key prefix (`{llmfail:NS}:`). Every key a script touches starts with that prefix,
so all of them share the `{llmfail:NS}` hash tag and live in that one slot.

Values are strings; numbers are written with `%.17g` (Lua's `tostring` keeps only
14 digits, which would move an epoch time by up to a millisecond). Absent hash
fields are None. `\\0` marks None in arguments where an empty string is a value.
"""

from __future__ import annotations

from .transitions import CLOCK_STEP_S

#: Helpers every script starts with: state load/save and the bench predicates of `ModelState`.
_PRELUDE = """
local P = ARGV[1]
local CLOCK_STEP = @CLOCK_STEP@
local NUMBERS = {bench_until=1, benched_at=1, bench_count=1, failures=1, last_error_status=1,
  last_error_at=1, probe_until=1, slow_since=1, slow_ms=1, speed_at=1, recheck_at=1}

local function fmt(x)
  if x == nil then return nil end
  if x == math.floor(x) and math.abs(x) < 1e15 then return string.format('%d', x) end
  return string.format('%.17g', x)
end
local function arg(v)
  if v == nil or v == '\\0' then return nil end
  return v
end
local function num(v)
  if v == nil or v == '\\0' or v == '' then return nil end
  return tonumber(v)
end
local function load(model)
  local raw = redis.call('HGETALL', P .. 'm:' .. model)
  if #raw == 0 then return nil end
  local s = {}
  for i = 1, #raw, 2 do
    if NUMBERS[raw[i]] then s[raw[i]] = tonumber(raw[i + 1]) else s[raw[i]] = raw[i + 1] end
  end
  s.manual = (s.manual == '1')
  return s
end
local function flat(s)
  local out = {}
  for k, v in pairs(s) do
    if k == 'manual' then
      if v then table.insert(out, 'manual'); table.insert(out, '1') end
    elseif type(v) == 'number' then
      table.insert(out, k); table.insert(out, fmt(v))
    elseif v ~= nil then
      table.insert(out, k); table.insert(out, v)
    end
  end
  return out
end
local function changed(model)
  redis.call('INCR', P .. 'ver')
  redis.call('PUBLISH', P .. 'inval', model)
end
local function save(model, s)
  local key = P .. 'm:' .. model
  redis.call('DEL', key)
  local out = flat(s)
  if #out > 0 then redis.call('HSET', key, unpack(out)) end
  redis.call('SADD', P .. 'models', model)
  changed(model)
end
local function stepped(s, now)
  return (not s.manual) and s.benched_at ~= nil and s.benched_at > now + CLOCK_STEP
end
local function is_benched(s, now)
  return s.bench_until ~= nil and s.bench_until > now and not stepped(s, now)
end
local function is_half_open(s, now)
  return s.bench_until ~= nil and (s.bench_until <= now or stepped(s, now))
end
local function clear_probe(s)
  s.probe_holder = nil
  s.probe_until = nil
end
""".replace("@CLOCK_STEP@", repr(CLOCK_STEP_S))

# ARGV: P, model, now, until, manual, reason, kind, replace. `transitions.manual_bench`, line for line.
BENCH = """
local model, now, till = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local manual, reason, kind, replace = ARGV[5] == '1', arg(ARGV[6]), arg(ARGV[7]), ARGV[8] == '1'
local s = load(model) or {bench_count = 0, failures = 0}
if kind == nil and manual then kind = 'manual' end
local benched_at = now
if is_benched(s, now) and not replace then
  if till <= s.bench_until then return flat(s) end
  if manual then
    if reason == nil and s.manual then reason = s.reason end
  elseif s.manual then
    manual, reason, kind = true, s.reason, s.kind
  end
  benched_at = s.benched_at
end
s.bench_until, s.benched_at, s.manual, s.reason, s.kind = till, benched_at, manual, reason, kind
s.bench_count = (s.bench_count or 0) + 1
clear_probe(s)
save(model, s)
return flat(s)
"""

# ARGV: P, model, now, kind, status, bench_for, factor, min_until, reason, began.
# `transitions.after_failure`, line for line; returns {benched, state}.
RECORD_FAILURE = """
local model, now, kind, status = ARGV[2], tonumber(ARGV[3]), ARGV[4], num(ARGV[5])
local bench_for, factor, min_until = num(ARGV[6]), tonumber(ARGV[7]), num(ARGV[8])
local reason, began = arg(ARGV[9]), num(ARGV[10])
local s = load(model) or {bench_count = 0, failures = 0}
local running = is_benched(s, now)
local in_flight = running and began ~= nil and s.benched_at ~= nil and began <= s.benched_at
local benched = 0
if bench_for ~= nil and not in_flight then
  benched = 1
  s.bench_count = (s.bench_count or 0) + 1
  local till = now + bench_for * math.min(factor, s.bench_count)
  if min_until ~= nil then till = math.max(till, min_until) end
  if running then till = math.max(till, s.bench_until) end
  if not (running and s.manual) then
    s.manual, s.reason, s.kind = false, reason, kind
  end
  if not running then s.benched_at = now end
  s.bench_until = till
end
s.failures = (s.failures or 0) + 1
s.last_error_kind, s.last_error_status, s.last_error_at = kind, status, now
clear_probe(s)
save(model, s)
return {benched, flat(s)}
"""

# ARGV: P, model, now. Returns the state before (empty when unknown); writes only when something changes.
RECORD_SUCCESS = """
local model, now = ARGV[2], tonumber(ARGV[3])
local s = load(model)
if s == nil then return {} end
local before = flat(s)
local keep = s.manual and is_benched(s, now)
local clean = (s.bench_until == nil or keep) and (s.failures or 0) == 0 and (s.bench_count or 0) == 0
  and s.probe_holder == nil and s.probe_until == nil
if clean then return before end
if not keep then
  s.bench_until, s.benched_at, s.manual, s.reason, s.kind = nil, nil, false, nil, nil
end
s.bench_count, s.failures = 0, 0
clear_probe(s)
save(model, s)
return before
"""

# ARGV: P, now, all ('1': every known key), model... Returns {model, bench_until} of each key lifted.
UNBENCH = """
local now = tonumber(ARGV[2])
local targets = {}
if ARGV[3] == '1' then
  targets = redis.call('SMEMBERS', P .. 'models')
else
  for i = 4, #ARGV do table.insert(targets, ARGV[i]) end
end
local lifted = {}
for _, model in ipairs(targets) do
  local s = load(model)
  if s ~= nil and (ARGV[3] ~= '1' or s.bench_until ~= nil) then
    if is_benched(s, now) then
      table.insert(lifted, model); table.insert(lifted, fmt(s.bench_until))
    end
    s.bench_until, s.benched_at, s.manual, s.reason, s.kind = nil, nil, false, nil, nil
    s.bench_count, s.failures = 0, 0
    clear_probe(s)
    save(model, s)
  end
end
return lifted
"""

# ARGV: P, model, now, lease, holder
CLAIM_PROBE = """
local model, now, lease, holder = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local s = load(model)
if s == nil or not is_half_open(s, now) then return 0 end
if not (s.probe_until == nil or s.probe_until <= now or s.probe_holder == holder) then return 0 end
s.probe_holder, s.probe_until = holder, now + lease
save(model, s)
return 1
"""

# ARGV: P, model, holder
RELEASE_PROBE = """
local model, holder = ARGV[2], ARGV[3]
local s = load(model)
if s == nil or s.probe_holder ~= holder then return 0 end
clear_probe(s)
save(model, s)
return 1
"""

# ARGV: P, model, now, slow_ms, recheck_at
DEMOTE = """
local model, now = ARGV[2], tonumber(ARGV[3])
local s = load(model) or {bench_count = 0, failures = 0}
if s.slow_since ~= nil then return 0 end
s.slow_since, s.slow_ms, s.speed_at, s.recheck_at = now, tonumber(ARGV[4]), now, tonumber(ARGV[5])
save(model, s)
return 1
"""

# ARGV: P, model, now, fast_ms
RESTORE = """
local model, now = ARGV[2], tonumber(ARGV[3])
local s = load(model)
if s == nil or s.slow_since == nil then return 0 end
s.slow_since, s.slow_ms, s.speed_at, s.recheck_at = nil, tonumber(ARGV[4]), now, nil
save(model, s)
return 1
"""

# ARGV: P, model, now, next_at
CLAIM_RECHECK = """
local model, now = ARGV[2], tonumber(ARGV[3])
local s = load(model)
if s == nil or s.slow_since == nil then return 0 end
if s.recheck_at ~= nil and s.recheck_at > now then return 0 end
s.recheck_at = tonumber(ARGV[4])
save(model, s)
return 1
"""

# ARGV: P, key, value. Returns the previous value (nil when unset); writes only on a change.
SWAP_META = """
local old = redis.call('HGET', P .. 'meta', ARGV[2])
if old ~= ARGV[3] then redis.call('HSET', P .. 'meta', ARGV[2], ARGV[3]) end
return old
"""

# ARGV: P, claim key, now, window, ttl
CLAIM_ALERT = """
local key, now, window = P .. 'alert:' .. ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local till = tonumber(redis.call('GET', key))
if till ~= nil and till > now then return 0 end
redis.call('SET', key, fmt(now + window), 'EX', tonumber(ARGV[5]))
return 1
"""

# ARGV: P, day, model, limit, ttl
TAKE_QUOTA = """
local key = P .. 'quota:' .. ARGV[2]
local used = tonumber(redis.call('HGET', key, ARGV[3]) or '0')
if used >= tonumber(ARGV[4]) then return 0 end
redis.call('HINCRBY', key, ARGV[3], 1)
redis.call('EXPIRE', key, tonumber(ARGV[5]))
return 1
"""

#: Per-model answer samples kept for percentiles and slow demotion (newest first).
SAMPLES_MAX = 20_000

# ARGV: P, events: a JSON array with one array of strings per event,
#   [ts, model|\\0, counter field|'', sample member|'', recovered '1'|'', field1, value1, ..., fieldn, valuen]
# (one packed argument, not 6 + 2n per event: the client hands redis-py one string instead of dozens).
# Returns the ids given. Per event: the next id of the `evid` counter becomes the stream id `<id>-0`; the
# minute bucket `t:<minute>` counts it under its (model, type, kind, chain) field, keeps the model's newest
# ts in the bucket and the bucket's lowest and highest id; an answer goes into the model's sample set.
APPEND = """
local ids = {}
for _, e in ipairs(cjson.decode(ARGV[2])) do
  local ts, model, field, sample, recovered = e[1], arg(e[2]), e[3], e[4], e[5]
  local id = redis.call('INCR', P .. 'evid')
  redis.call('XADD', P .. 'ev', id .. '-0', unpack(e, 6))
  local minute = math.floor(tonumber(ts) / 60)
  local bucket = P .. 't:' .. minute
  if redis.call('HSETNX', bucket, '\\30lo', id) == 1 then
    redis.call('ZADD', P .. 'tidx', minute, minute)
  end
  redis.call('HSET', bucket, '\\30hi', id)
  if model ~= nil then
    redis.call('HINCRBY', bucket, field, 1)
    if recovered == '1' then redis.call('HINCRBY', bucket, '\\30rec\\31' .. model, 1) end
    local seen = tonumber(redis.call('HGET', bucket, '\\30ls\\31' .. model))
    if seen == nil or tonumber(ts) > seen then redis.call('HSET', bucket, '\\30ls\\31' .. model, ts) end
    if sample ~= '' then
      local key = P .. 's:' .. model
      redis.call('ZADD', key, ts, string.format('%012d', id) .. sample)
      redis.call('SADD', P .. 'smodels', model)
      if redis.call('ZCARD', key) > @SAMPLES_MAX@ then
        redis.call('ZREMRANGEBYRANK', key, 0, -@SAMPLES_MAX@ - 1)
      end
    end
  end
  table.insert(ids, id)
end
return ids
""".replace("@SAMPLES_MAX@", str(SAMPLES_MAX))

# ARGV: P, first bucket. The lowest event id of every bucket from that minute on (0: none), so a
# `since` read starts at the first event that can be in the window even when ts are out of id order.
EVENTS_START = """
local lowest = 0
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', P .. 'tidx', ARGV[2], '+inf')) do
  local lo = tonumber(redis.call('HGET', P .. 't:' .. minute, '\\30lo'))
  if lo ~= nil and (lowest == 0 or lo < lowest) then lowest = lo end
end
return lowest
"""

# ARGV: P, now, retention, force ('1'), interval. Returns the number of events deleted (-1: not due).
# The cut: the first id whose ts is >= now - retention, found by binary search over the ids (ts grow
# with ids, up to the few writers' skew), then XTRIM MINID (exact, so the count is the truth).
PRUNE = """
local now, cutoff = tonumber(ARGV[2]), tonumber(ARGV[2]) - tonumber(ARGV[3])
if ARGV[4] ~= '1' then
  local last = tonumber(redis.call('HGET', P .. 'meta', 'last_prune'))
  if last ~= nil and now - last >= 0 and now - last < tonumber(ARGV[5]) then return -1 end
end
redis.call('HSET', P .. 'meta', 'last_prune', fmt(now))
local stream = P .. 'ev'
local function ts_at(id)
  local row = redis.call('XRANGE', stream, id .. '-0', '+', 'COUNT', 1)
  if #row == 0 then return nil, nil end
  local fields = row[1][2]
  local at = tonumber(string.match(row[1][1], '^(%d+)'))
  for k = 1, #fields, 2 do
    if fields[k] == 'ts' then return at, tonumber(fields[k + 1]) end
  end
  return at, nil
end
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
local deleted = 0
if #first > 0 then
  local lo = tonumber(string.match(first[1][1], '^(%d+)'))
  local hi = tonumber(redis.call('GET', P .. 'evid') or '0') + 1
  -- invariant: every id < lo is older than the cutoff (or gone); hi is past the cut
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local at, ts = ts_at(mid)
    if at == nil then hi = mid
    elseif ts ~= nil and ts < cutoff then lo = at + 1
    else hi = mid end
  end
  local before = redis.call('XLEN', stream)
  redis.call('XTRIM', stream, 'MINID', lo .. '-0')
  deleted = before - redis.call('XLEN', stream)
end
local cut_minute = math.floor(cutoff / 60)
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', P .. 'tidx', '-inf', '(' .. cut_minute)) do
  redis.call('DEL', P .. 't:' .. minute)
end
redis.call('ZREMRANGEBYSCORE', P .. 'tidx', '-inf', '(' .. cut_minute)
for _, model in ipairs(redis.call('SMEMBERS', P .. 'smodels')) do
  redis.call('ZREMRANGEBYSCORE', P .. 's:' .. model, '-inf', '(' .. fmt(cutoff))
end
return deleted
"""

# ARGV: P, first minute, last minute, lo, hi. The counters of the whole minutes inside [lo, hi] summed
# here (the newest-ts fields as a max), so `tally` moves a few dozen figures instead of every bucket;
# the minutes cut by the window come back as (minute, first id, last id), to be counted from their events.
TALLY = """
local lo, hi = tonumber(ARGV[4]), tonumber(ARGV[5])
local sums, edges, out = {}, {}, {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'tidx', ARGV[2], ARGV[3])) do
  local minute = tonumber(m)
  local bucket = P .. 't:' .. m
  if minute * 60 >= lo and (minute + 1) * 60 <= hi then
    local raw = redis.call('HGETALL', bucket)
    for i = 1, #raw, 2 do
      local f, v = raw[i], tonumber(raw[i + 1])
      local tag = string.sub(f, 1, 3)
      if tag == '\\30ls' then
        if sums[f] == nil or v > sums[f] then sums[f] = v end
      elseif tag ~= '\\30lo' and tag ~= '\\30hi' then
        sums[f] = (sums[f] or 0) + v
      end
    end
  else
    local ids = redis.call('HMGET', bucket, '\\30lo', '\\30hi')
    if ids[1] and ids[2] then table.insert(edges, m); table.insert(edges, ids[1]); table.insert(edges, ids[2]) end
  end
end
for f, v in pairs(sums) do table.insert(out, f); table.insert(out, fmt(v)) end
return {out, edges}
"""

# ARGV: P, model... Every named key's hash (empty when unknown), for `states()` and the cache refresh.
READ_STATES = """
local out = {redis.call('GET', P .. 'ver') or '0'}
for i = 2, #ARGV do table.insert(out, redis.call('HGETALL', P .. 'm:' .. ARGV[i])) end
return out
"""

# ARGV: P. Every known key with its hash.
READ_ALL = """
local out = {}
for _, model in ipairs(redis.call('SMEMBERS', P .. 'models')) do
  table.insert(out, model)
  table.insert(out, redis.call('HGETALL', P .. 'm:' .. model))
end
return out
"""

SCRIPTS = {
    "bench": BENCH,
    "record_failure": RECORD_FAILURE,
    "record_success": RECORD_SUCCESS,
    "unbench": UNBENCH,
    "claim_probe": CLAIM_PROBE,
    "release_probe": RELEASE_PROBE,
    "demote": DEMOTE,
    "restore": RESTORE,
    "claim_recheck": CLAIM_RECHECK,
    "swap_meta": SWAP_META,
    "claim_alert": CLAIM_ALERT,
    "take_quota": TAKE_QUOTA,
    "append": APPEND,
    "events_start": EVENTS_START,
    "tally": TALLY,
    "prune": PRUNE,
    "read_states": READ_STATES,
    "read_all": READ_ALL,
}


def script_source(name: str) -> str:
    """The full Lua source of one script: the shared prelude, then its body."""
    return _PRELUDE + SCRIPTS[name]
