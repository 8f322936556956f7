-- etastream streaming windows: apply a batch of events and read rows, in one call.
-- Mirrors stream_features/replay_state.py rule for rule; the Python module prepends the
-- tables READS, KEEP, N_BATCH and BATCH_GROUPS generated from the feature definitions.
--
-- Each entity's counters are one hash ("s:<store>", "m:<market>"), loaded once per call and
-- written back once: "%<signal>" (the signal's per-minute buckets as a running total, a
-- MessagePack array bucket, total, bucket, total... in bucket order, where total is the sum of
-- every kept bucket up to that one: a window's sum is two lookups and a subtraction, and the
-- array goes to and from Lua without a table built per bucket), "outstanding", "onshift",
-- "busy", "wm" (newest applied event time), "snap" (newest snapshot time). Fields of the two
-- earlier layouts, "#<signal>" (bucket, value pairs) and "<signal>:<bucket>" (one per bucket),
-- are moved into the running-total field when the entity is next touched.
-- Beside it, "e:<entity key>" holds the event ids seen within the lateness horizon and
-- "o:<store>" the outstanding orders with their creation time; both are trimmed when the
-- entity's clean-up comes round (every PRUNE_EVERY buckets of its event time), which is also
-- when the TTL of all three is refreshed. An entity's first event always takes the clean-up,
-- and the dedup hash then holds that event's id, so it never empties; the order hash can
-- (every order delivered), and gets its TTL again when an order lands in it empty (the
-- store's "outstanding" goes from 0 to 1). One PEXPIRE per key per call cost about 1.4 us an
-- event.
--
-- ARGV: prefix, lateness_ms, max_outstanding_ms, entity_ttl_ms, n, read_only (1: only read
-- rows, change nothing), then the n events as one JSON array of 9 values each (one argument
-- decoded in C, where 9 arguments an event cost Redis and the client an object each):
--   kind (C created, D delivered, S snapshot, E dasher event), event id, ts ms, store, market,
--   order id (C, D) or signal (E), a, b, c  -- C: category, hour_of_week, hour_of_day;
--   S: onshift, busy; E: delta
-- Returns a flat array: per order (kind C) #READS raw values, store wm, market wm, #BATCH
-- batch values (false = missing); then applied, duplicates, late, unmatched.

local prefix = ARGV[1]
local lateness = tonumber(ARGV[2])
local max_out = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local read_only = ARGV[6] == '1'
local EV = cjson.decode(ARGV[7])
local BUCKET = 60000
local PRUNE_EVERY = 10
local floor = math.floor
local lat_buckets = floor(lateness / BUCKET)

local cache, dirty, deleted = {}, {}, {}
local touched = {}  -- dedup and order hashes whose TTL is refreshed in this call
local expire = {}  -- entity hashes whose TTL is refreshed (at their clean-up, see advance)
local stats = {applied = 0, duplicates = 0, late = 0, unmatched = 0}

local function fmt(v) return string.format('%.0f', v) end

local buckets = {}  -- key -> signal -> {bucket, total, bucket, total, ...}
local dirty_sig = {}  -- key -> signal -> true: its packed field must be written back

-- The running total of ``t`` up to bucket ``x``: the sum of every kept bucket <= x.
local function total_at(t, x)
  local n = #t
  if n == 0 or x < t[1] then return 0 end
  if x >= t[n - 1] then return t[n] end
  local lo, hi = 1, n / 2 - 1  -- entries: bucket t[2i - 1], total t[2i]
  while lo < hi do
    local mid = floor((lo + hi + 1) / 2)
    if t[2 * mid - 1] <= x then lo = mid else hi = mid - 1 end
  end
  return t[2 * lo]
end

-- Running totals from a bucket -> value table (the earlier layouts).
local function from_values(values)
  local order = {}
  for bucket, _ in pairs(values) do order[#order + 1] = bucket end
  table.sort(order)
  local t, sum = {}, 0
  for _, bucket in ipairs(order) do
    sum = sum + values[bucket]
    t[#t + 1] = bucket
    t[#t + 1] = sum
  end
  return t
end

local function entity(key)
  local st = cache[key]
  if st == nil then
    st = {}
    local bk = {}
    local gone = {}
    local legacy = {}  -- signal -> bucket -> value, from the earlier layouts
    local flat = redis.call('HGETALL', key)
    for i = 1, #flat, 2 do
      local field = flat[i]
      local first = string.byte(field, 1)
      if first == 37 then  -- '%<signal>': running totals
        bk[string.sub(field, 2)] = cmsgpack.unpack(flat[i + 1])
      elseif first == 35 then  -- '#<signal>': bucket, value pairs
        local signal = string.sub(field, 2)
        local pairs_ = cmsgpack.unpack(flat[i + 1])
        legacy[signal] = legacy[signal] or {}
        for j = 1, #pairs_, 2 do
          legacy[signal][pairs_[j]] = (legacy[signal][pairs_[j]] or 0) + pairs_[j + 1]
        end
        gone[field] = true
      else
        local colon = string.find(field, ':', 1, true)
        if colon == nil then
          st[field] = tonumber(flat[i + 1])
        else  -- '<signal>:<bucket>', one field per bucket
          local signal = string.sub(field, 1, colon - 1)
          local bucket = tonumber(string.sub(field, colon + 1))
          legacy[signal] = legacy[signal] or {}
          legacy[signal][bucket] = (legacy[signal][bucket] or 0) + tonumber(flat[i + 1])
          gone[field] = true
        end
      end
    end
    cache[key] = st
    dirty[key] = {}
    deleted[key] = gone
    dirty_sig[key] = {}
    for signal, values in pairs(legacy) do
      bk[signal] = from_values(values)
      dirty_sig[key][signal] = true
    end
    buckets[key] = bk
  end
  return st
end

local function set(key, st, field, value)
  st[field] = value
  dirty[key][field] = true
end

local function add(key, st, field, delta)
  set(key, st, field, (st[field] or 0) + delta)
end

local function add_bucket(key, signal, bucket, delta)
  local bk = buckets[key]
  local t = bk[signal]
  if t == nil then
    t = {}
    bk[signal] = t
  end
  dirty_sig[key][signal] = true
  local n = #t
  if n == 0 or bucket > t[n - 1] then  -- the newest bucket so far: a new entry at the end
    t[n + 1] = bucket
    t[n + 2] = (t[n] or 0) + delta
    return
  end
  local i = n - 1  -- an earlier bucket (a late event): find it, or where it goes
  while i > 1 and t[i - 2] >= bucket do i = i - 2 end
  if t[i] ~= bucket then
    table.insert(t, i, bucket)
    table.insert(t, i + 1, (i > 1 and t[i - 1] or 0))
  end
  for j = i + 1, #t, 2 do t[j] = t[j] + delta end
end

local function admit(key, st, eid, ts)
  if st.wm ~= nil and ts < st.wm - lateness then
    stats.late = stats.late + 1
    return false
  end
  if redis.call('HSETNX', prefix .. 'e:' .. key, eid, ts) == 0 then
    stats.duplicates = stats.duplicates + 1
    return false
  end
  stats.applied = stats.applied + 1
  return true
end

local function advance(key, kind, st, ts, mkey, market, okey)
  local old = st.wm
  if old ~= nil and ts <= old then return end
  set(key, st, 'wm', ts)
  local newest = floor(ts / BUCKET)
  if old ~= nil and floor(newest / PRUNE_EVERY)
      == floor(floor(old / BUCKET) / PRUNE_EVERY) then
    return
  end
  local keep = KEEP[kind]
  local bk = buckets[key]
  for head, t in pairs(bk) do
    local k = keep[head]
    if k ~= nil and #t > 0 and t[1] < newest - k - lat_buckets then
      local oldest = newest - k - lat_buckets
      local first = 1
      while first <= #t and t[first] < oldest do first = first + 2 end
      local dropped = t[first - 1]  -- the total of the buckets that go
      local kept = {}
      for j = first, #t, 2 do
        kept[#kept + 1] = t[j]
        kept[#kept + 1] = t[j + 1] - dropped
      end
      bk[head] = kept
      dirty_sig[key][head] = true
    end
  end
  expire[key] = true
  local ekey = prefix .. 'e:' .. key
  touched[ekey] = true
  if okey ~= nil then touched[okey] = true end
  local seen = redis.call('HGETALL', ekey)
  local old_ids = {}
  for i = 1, #seen, 2 do
    if tonumber(seen[i + 1]) < ts - lateness then old_ids[#old_ids + 1] = seen[i] end
  end
  for j = 1, #old_ids, 400 do redis.call('HDEL', ekey, unpack(old_ids, j, math.min(j + 399, #old_ids))) end
  if okey ~= nil then
    local orders = redis.call('HGETALL', okey)
    local stale = {}
    for i = 1, #orders, 2 do
      if tonumber(orders[i + 1]) < ts - max_out then
        stale[#stale + 1] = orders[i]
        add(key, st, 'outstanding', -1)
        add(mkey, market, 'outstanding', -1)
      end
    end
    for j = 1, #stale, 400 do redis.call('HDEL', okey, unpack(stale, j, math.min(j + 399, #stale))) end
  end
end

local out, nout = {}, 0  -- the reply, and its length (# on a long table is a search)

local function read(skey, mkey, bucket)
  local sst, mst, sbk, mbk = cache[skey], cache[mkey], buckets[skey], buckets[mkey]
  for _, r in ipairs(READS) do
    local st, bk = sst, sbk
    if r[1] == 'm' then st, bk = mst, mbk end
    nout = nout + 1
    if st.wm == nil then
      out[nout] = false
    elseif r[3] > 0 then
      local t = bk[r[2]]
      out[nout] = t and (total_at(t, bucket) - total_at(t, bucket - r[3])) or 0
    else
      out[nout] = st[r[2]] or 0
    end
  end
end

local batch_memo, batch_row = {}, {}  -- HMGET replies by hash and the extras the fields use
local extra, lookup = {}, {}  -- an order's batch keys, reused from one order to the next
local version = redis.call('GET', prefix .. 'batch:current')
local group_prefix = {}
if version then
  for gi, g in ipairs(BATCH_GROUPS) do
    group_prefix[gi] = prefix .. 'b:' .. version .. ':' .. g[1] .. ':'
  end
end
for i = 0, n - 1 do
  local base = 1 + i * 9
  local kind, eid, ts = EV[base], EV[base + 1], EV[base + 2]
  local store, market, ref = EV[base + 3], EV[base + 4], EV[base + 5]
  local a, b, c = EV[base + 6], EV[base + 7], EV[base + 8]
  local mkey = prefix .. 'm:' .. market
  local mst = entity(mkey)
  if kind == 'C' or kind == 'D' then
    local skey = prefix .. 's:' .. store
    local sst = entity(skey)
    local bucket = floor(ts / BUCKET)
    if kind == 'C' then
      read(skey, mkey, bucket)
      out[nout + 1], out[nout + 2] = sst.wm or false, mst.wm or false
      nout = nout + 2
      if version then
        extra.hour_of_week, extra.hour_of_day = b, c
        lookup.store_id, lookup.market_id, lookup.store_category = store, market, a
        for gi, g in ipairs(BATCH_GROUPS) do
          local hkey = group_prefix[gi] .. lookup[g[1]]
          local memo = hkey  -- a group's values depend on its hash and the extras it uses
          for _, x in ipairs(g[4]) do memo = memo .. '\0' .. extra[x] end
          local values = batch_memo[memo]
          if values == nil then
            local fields = {}
            for j, f in ipairs(g[2]) do
              fields[j] = f[2] == '' and f[1] or (f[1] .. '|' .. extra[f[2]])
            end
            values = redis.call('HMGET', hkey, unpack(fields))
            batch_memo[memo] = values
          end
          for j, pos in ipairs(g[3]) do batch_row[pos] = values[j] end
        end
        for j = 1, N_BATCH do out[nout + j] = batch_row[j] end
        nout = nout + N_BATCH
      else
        for j = 1, N_BATCH do out[nout + j] = false end
        nout = nout + N_BATCH
      end
    end
    if not read_only and admit(skey, sst, eid, ts) then
      if kind == 'C' then
        add_bucket(skey, 'created', bucket, 1)
        add_bucket(mkey, 'created', bucket, 1)
        add(skey, sst, 'outstanding', 1)
        add(mkey, mst, 'outstanding', 1)
        redis.call('HSET', prefix .. 'o:' .. store, ref, ts)
        if sst.outstanding == 1 then touched[prefix .. 'o:' .. store] = true end  -- a new hash
      else
        local okey = prefix .. 'o:' .. store
        local created = redis.call('HGET', okey, ref)
        if not created then
          stats.unmatched = stats.unmatched + 1
        else
          redis.call('HDEL', okey, ref)
          created = tonumber(created)
          add(skey, sst, 'outstanding', -1)
          add(mkey, mst, 'outstanding', -1)
          add_bucket(skey, 'delivered', bucket, 1)
          add_bucket(skey, 'duration_s', bucket, ts - created)
        end
      end
      advance(skey, 's', sst, ts, mkey, mst, prefix .. 'o:' .. store)
      advance(mkey, 'm', mst, ts, nil, nil, nil)
    end
  elseif not read_only and admit(mkey, mst, eid, ts) then
    if kind == 'S' then
      if ts >= (mst.snap or -1) then
        set(mkey, mst, 'snap', ts)
        set(mkey, mst, 'onshift', tonumber(a))
        set(mkey, mst, 'busy', tonumber(b))
      end
    elseif ts > (mst.snap or -1) then
      add(mkey, mst, ref, tonumber(a))
    end
    advance(mkey, 'm', mst, ts, nil, nil, nil)
  end
end

for key, fields in pairs(dirty) do
  local st = cache[key]
  local args = {}
  for field, _ in pairs(fields) do
    args[#args + 1] = field
    args[#args + 1] = fmt(st[field])
  end
  local gone = {}
  for field, _ in pairs(deleted[key]) do gone[#gone + 1] = field end
  for signal, _ in pairs(dirty_sig[key]) do
    local t = buckets[key][signal]
    if #t > 0 then
      args[#args + 1] = '%' .. signal
      args[#args + 1] = cmsgpack.pack(t)
    else
      gone[#gone + 1] = '%' .. signal
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  if expire[key] and (#args > 0 or #gone > 0) then redis.call('PEXPIRE', key, ttl) end
end

for key, _ in pairs(touched) do redis.call('PEXPIRE', key, ttl) end

out[nout + 1], out[nout + 2] = stats.applied, stats.duplicates
out[nout + 3], out[nout + 4] = stats.late, stats.unmatched
return out
