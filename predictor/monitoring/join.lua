-- The monitor's join of predictions and deliveries (see predictor/monitoring/join.py).
-- Every key it touches is declared, so one script serves a single Redis (a whole batch in one
-- call) and Redis Cluster (one call per hash slot, all of its keys in that slot).
-- KEYS: per op, its order's waiting predictions (hash), delivery (string) and joined model
-- names (set): KEYS[3i-2], KEYS[3i-1], KEYS[3i] for op i.
-- ARGV: TTL in seconds, then per op: kind ('P' or 'D'), model name, packed payload.
-- Returns {duplicates, op, model, prediction, delivery, op, model, ...}, op being the 1-based
-- index of the op that made the match (the caller knows its order id).
local ttl = tonumber(ARGV[1])
local out = {0}
for i = 1, (#ARGV - 1) / 3 do
  local a, k = 3 * i - 1, 3 * i - 2
  local kind, model, payload = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local pk, dk, jk = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  if kind == 'P' then
    if redis.call('SISMEMBER', jk, model) == 1 then
      out[1] = out[1] + 1
    else
      local delivery = redis.call('GET', dk)
      if delivery then
        redis.call('SADD', jk, model)
        redis.call('EXPIRE', jk, ttl)
        redis.call('HDEL', pk, model)
        out[#out + 1] = i
        out[#out + 1] = model
        out[#out + 1] = payload
        out[#out + 1] = delivery
      else
        redis.call('HSET', pk, model, payload)
        redis.call('EXPIRE', pk, ttl)
      end
    end
  elseif redis.call('EXISTS', dk) == 1 then
    out[1] = out[1] + 1
  else
    redis.call('SET', dk, payload, 'EX', ttl)
    local pending = redis.call('HGETALL', pk)
    if #pending > 0 then
      for j = 1, #pending, 2 do
        redis.call('SADD', jk, pending[j])
        out[#out + 1] = i
        out[#out + 1] = pending[j]
        out[#out + 1] = pending[j + 1]
        out[#out + 1] = payload
      end
      redis.call('EXPIRE', jk, ttl)
      redis.call('DEL', pk)
    end
  end
end
return out
