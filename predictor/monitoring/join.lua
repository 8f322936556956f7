-- The monitor's join of predictions and deliveries (see predictor/monitoring/join.py).
-- ARGV: key prefix, TTL in seconds, then per op: kind ('P' or 'D'), order id, model name,
-- packed payload. Keys of one order share the hash tag {order id}.
-- Returns {duplicates, order, model, prediction, delivery, order, model, ...}.
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local out = {0}
for i = 3, #ARGV, 4 do
  local kind, order, model, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local base = prefix .. '{' .. order .. '}'
  local pk, dk, jk = base .. ':p', base .. ':d', base .. ':j'
  if kind == 'P' then
    if redis.call('SISMEMBER', jk, model) == 1 then
      out[1] = out[1] + 1
    else
      local delivery = redis.call('GET', dk)
      if delivery then
        redis.call('SADD', jk, model)
        redis.call('EXPIRE', jk, ttl)
        redis.call('HDEL', pk, model)
        out[#out + 1] = order
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
        out[#out + 1] = order
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
