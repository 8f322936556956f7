-- etastream streaming windows: apply a batch of events and read rows, in one call.
-- Mirrors stream_features/replay_state.py rule for rule; the Python module prepends the
-- tables READS, KEEP, N_BATCH and BATCH_GROUPS generated from the feature definitions.
--
-- Each entity's counters are one hash ("s:<store>", "m:<market>"), loaded once per call and
-- written back once: "#<signal>" (the signal's per-minute buckets, a MessagePack array
-- bucket, value, bucket, value...: unpacked in C, where a field per bucket cost a string parse
-- each), "outstanding", "onshift", "busy", "wm" (newest applied event time), "snap" (newest
-- snapshot time). "<signal>:<bucket>" fields of the earlier layout are moved into the packed
-- field when the entity is next touched. Beside it, "e:<entity key>" holds the event ids seen
-- within the lateness horizon and "o:<store>" the outstanding orders with their creation time;
-- both are trimmed when the entity's clean-up comes round (every PRUNE_EVERY buckets of its
-- event time), which is also when the entity hash's TTL is refreshed.
--
-- ARGV: prefix, lateness_ms, max_outstanding_ms, entity_ttl_ms, n, read_only (1: only read
-- rows, change nothing), then n events of 9 fields:
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
local BUCKET = 60000
local PRUNE_EVERY = 10
local lat_buckets = math.floor(lateness / BUCKET)

local cache, dirty, deleted = {}, {}, {}
local touched = {}  -- dedup and order hashes written in this call, for their TTL
local expire = {}  -- entity hashes whose TTL is refreshed (at their clean-up, see advance)
local stats = {applied = 0, duplicates = 0, late = 0, unmatched = 0}

local function fmt(v) return string.format('%.0f', v) end

local buckets = {}  -- key -> signal -> bucket number -> value
local dirty_sig = {}  -- key -> signal -> true: its packed field must be written back

local function entity(key)
  local st = cache[key]
  if st == nil then
    st = {}
    local bk = {}
    local gone = {}
    local flat = redis.call('HGETALL', key)
    for i = 1, #flat, 2 do
      local field = flat[i]
      if string.byte(field, 1) == 35 then  -- '#<signal>': the signal's buckets, packed
        local pairs_ = cmsgpack.unpack(flat[i + 1])
        local t = {}
        for j = 1, #pairs_, 2 do t[pairs_[j]] = pairs_[j + 1] end
        bk[string.sub(field, 2)] = t
      else
        local colon = string.find(field, ':', 1, true)
        if colon == nil then
          st[field] = tonumber(flat[i + 1])
        else  -- '<signal>:<bucket>' of the layout before packing: move it over
          local head = string.sub(field, 1, colon - 1)
          bk[head] = bk[head] or {}
          bk[head][tonumber(string.sub(field, colon + 1))] = tonumber(flat[i + 1])
          gone[field] = true
        end
      end
    end
    cache[key] = st
    buckets[key] = bk
    dirty[key] = {}
    deleted[key] = gone
    dirty_sig[key] = {}
    for field, _ in pairs(gone) do
      dirty_sig[key][string.sub(field, 1, string.find(field, ':', 1, true) - 1)] = true
    end
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
  bk[signal] = bk[signal] or {}
  bk[signal][bucket] = (bk[signal][bucket] or 0) + delta
  dirty_sig[key][signal] = true
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
  touched[prefix .. 'e:' .. key] = true
  stats.applied = stats.applied + 1
  return true
end

local function advance(key, kind, st, ts, mkey, market, okey)
  local old = st.wm
  if old ~= nil and ts <= old then return end
  set(key, st, 'wm', ts)
  local newest = math.floor(ts / BUCKET)
  if old ~= nil and math.floor(newest / PRUNE_EVERY)
      == math.floor(math.floor(old / BUCKET) / PRUNE_EVERY) then
    return
  end
  local keep = KEEP[kind]
  for head, t in pairs(buckets[key]) do
    local k = keep[head]
    if k ~= nil then
      local oldest = newest - k - lat_buckets
      for bucket, _ in pairs(t) do
        if bucket < oldest then
          t[bucket] = nil
          dirty_sig[key][head] = true
        end
      end
    end
  end
  expire[key] = true
  local ekey = prefix .. 'e:' .. key
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

local function read(keys, bucket, out)
  for _, r in ipairs(READS) do
    local key = keys[r[1]]
    local s = cache[key]
    if s.wm == nil then
      out[#out + 1] = false
    elseif r[3] > 0 then
      local total = 0
      local first = bucket - r[3] + 1
      for b, v in pairs(buckets[key][r[2]] or {}) do
        if b >= first and b <= bucket then total = total + v end
      end
      out[#out + 1] = total
    else
      out[#out + 1] = s[r[2]] or 0
    end
  end
end

local out = {}
local batch_memo, batch_row = {}, {}  -- HMGET replies by hash and fields
local version = redis.call('GET', prefix .. 'batch:current')
for i = 0, n - 1 do
  local base = 7 + i * 9
  local kind, eid, ts = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2])
  local store, market, ref = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local a, b, c = ARGV[base + 6], ARGV[base + 7], ARGV[base + 8]
  local mkey = prefix .. 'm:' .. market
  local mst = entity(mkey)
  if kind == 'C' or kind == 'D' then
    local skey = prefix .. 's:' .. store
    local sst = entity(skey)
    local bucket = math.floor(ts / BUCKET)
    if kind == 'C' then
      read({s = skey, m = mkey}, bucket, out)
      out[#out + 1] = sst.wm or false
      out[#out + 1] = mst.wm or false
      if version then
        local extra = {hour_of_week = b, hour_of_day = c}
        local lookup = {store_id = store, market_id = market, store_category = a}
        for _, g in ipairs(BATCH_GROUPS) do
          local id = lookup[g[1]]
          local fields = {}
          for j, f in ipairs(g[2]) do
            fields[j] = f[2] == '' and f[1] or (f[1] .. '|' .. extra[f[2]])
          end
          local hkey = prefix .. 'b:' .. version .. ':' .. g[1] .. ':' .. id
          local memo = hkey .. '\0' .. table.concat(fields, '\0')
          local values = batch_memo[memo]
          if values == nil then
            values = redis.call('HMGET', hkey, unpack(fields))
            batch_memo[memo] = values
          end
          for j, pos in ipairs(g[3]) do batch_row[pos] = values[j] end
        end
        for j = 1, N_BATCH do out[#out + 1] = batch_row[j] end
      else
        for _ = 1, N_BATCH do out[#out + 1] = false end
      end
    end
    if not read_only and admit(skey, sst, eid, ts) then
      if kind == 'C' then
        add_bucket(skey, 'created', bucket, 1)
        add_bucket(mkey, 'created', bucket, 1)
        add(skey, sst, 'outstanding', 1)
        add(mkey, mst, 'outstanding', 1)
        redis.call('HSET', prefix .. 'o:' .. store, ref, ts)
        touched[prefix .. 'o:' .. store] = true
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
    local packed = {}
    for bucket, value in pairs(buckets[key][signal]) do
      packed[#packed + 1] = bucket
      packed[#packed + 1] = value
    end
    if #packed > 0 then
      args[#args + 1] = '#' .. signal
      args[#args + 1] = cmsgpack.pack(packed)
    else
      gone[#gone + 1] = '#' .. signal
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  if expire[key] and (#args > 0 or #gone > 0) then redis.call('PEXPIRE', key, ttl) end
end

for key, _ in pairs(touched) do redis.call('PEXPIRE', key, ttl) end

out[#out + 1] = stats.applied
out[#out + 1] = stats.duplicates
out[#out + 1] = stats.late
out[#out + 1] = stats.unmatched
return out
