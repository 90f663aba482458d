package store

// Cancelled jobs. A cancel removes a lane's waiting tasks (pending, scheduled, retrying) from
// asynq, and the same script keeps, for the report, what a recipient's row needs of each:
//
//	wabulk:{<lane>}:cancelledjobs  HASH recipient digits (the TaskID's last part: a lane's TaskIDs
//	                                    differ only there) -> the job's refs as JSON ({"ref":…,
//	                                    "ref1":…,"ref2":…}, only those set; "" for none), retention TTL
//
// That is about 120 bytes a job with three short refs (TestCancelKeepsWhatTheReportNeeds measures
// it), where the asynq task it replaces held some 700. A job a worker had taken when the cancel
// came is refused by its pre-send check (Begin) and completed unsent by asynq: the report finds
// those among the lane's completed tasks, as the tasks without a result (the sent marker).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// cancelBatch is how many tasks one call of cancelScript removes, so that a cancel of a million
// jobs never holds Redis for long.
const cancelBatch = 1000

// KEYS: asynq's pending, scheduled and retry keys of a lane, its cancelledjobs. ARGV: the lane's
// task key prefix, the batch size, the TTL in seconds. Removes up to a batch of the lane's
// waiting tasks as asynq's DeleteAll*Tasks do (the task hash, its unique lock if it holds one,
// the id in its list) and records each one's refs, read from field 2 (the payload) of asynq's
// TaskMessage (its encoding: asynqlayout.go, which this parser must follow). Returns how many it
// removed.
var cancelScript = redis.NewScript(`
local function varint(s, i)
  local v, m = 0, 1
  while true do
    local b = string.byte(s, i)
    if not b then return nil, i end
    i = i + 1
    v = v + (b % 128) * m
    if b < 128 then return v, i end
    m = m * 128
  end
end
local function payload(msg)
  local i = 1
  while i <= #msg do
    local tag
    tag, i = varint(msg, i)
    if not tag then return nil end
    local wire = tag % 8
    if wire == 0 then
      local v
      v, i = varint(msg, i)
      if not v then return nil end
    elseif wire == 2 then
      local len
      len, i = varint(msg, i)
      if not len then return nil end
      if math.floor(tag / 8) == 2 then return string.sub(msg, i, i + len - 1) end
      i = i + len
    else
      return nil
    end
  end
  return nil
end
local function refs(msg)
  if not msg then return '' end
  local p = payload(msg)
  if not p then return '' end
  local ok, j = pcall(cjson.decode, p)
  if not ok or type(j) ~= 'table' then return '' end
  local r, any = {}, false
  for _, k in ipairs({'ref', 'ref1', 'ref2'}) do
    if type(j[k]) == 'string' and j[k] ~= '' then r[k] = j[k]; any = true end
  end
  if not any then return '' end
  return cjson.encode(r)
end
local limit, n = tonumber(ARGV[2]), 0
local function keep(id)
  local tk = ARGV[1] .. id
  local t = redis.call('HMGET', tk, 'msg', 'unique_key')
  redis.call('HSET', KEYS[4], string.match(id, '[^:]*$'), refs(t[1]))
  if t[2] and t[2] ~= '' and redis.call('GET', t[2]) == id then redis.call('DEL', t[2]) end
  redis.call('DEL', tk)
  n = n + 1
end
local ids = redis.call('LRANGE', KEYS[1], -limit, -1)
for _, id in ipairs(ids) do keep(id) end
if #ids > 0 then redis.call('LTRIM', KEYS[1], 0, -#ids - 1) end
for k = 2, 3 do
  if n < limit then
    ids = redis.call('ZRANGE', KEYS[k], 0, limit - n - 1)
    for _, id in ipairs(ids) do keep(id) end
    if #ids > 0 then redis.call('ZREMRANGEBYRANK', KEYS[k], 0, #ids - 1) end
  end
end
if n > 0 then redis.call('EXPIRE', KEYS[4], ARGV[3]) end
return n
`)

// cancelWaiting removes every waiting task of lane (pending, scheduled, retrying), keeping what
// the report needs of each, and returns how many it removed.
func (l *Ledger) cancelWaiting(ctx context.Context, lane string) (int64, error) {
	p := asynqKeys(lane)
	keys := []string{p.pending, p.scheduled, p.retry, cancelledJobsKey(lane)}
	ttl := int64(l.retention / time.Second)
	var total int64
	for {
		n, err := cancelScript.Run(ctx, l.rdb, keys, p.task, cancelBatch, ttl).Int64()
		if err != nil {
			return total, fmt.Errorf("cancel lane %s: %w", lane, err)
		}
		total += n
		if n < cancelBatch {
			return total, nil
		}
	}
}

// reportCancelled lists the jobs a cancel removed from lane; at is the cancel's time.
func (l *Ledger) reportCancelled(ctx context.Context, lane string, at time.Time, fn func(ReportRow) error) error {
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, cancelledJobsKey(lane), cursor, "", reportBatch).Result()
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			r := ReportRow{State: ReportCancelled, UpdatedAt: at}
			r.To, _ = recipientOfDigits(kv[i])
			r.Ref, r.Ref1, r.Ref2 = refsOfPayload([]byte(kv[i+1]))
			if err := fn(r); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// reportRefused lists the rows of a lane's completed tasks that were never sent (refused after
// the cancel at), leaving out any the cancel's records list already (a TaskID enqueued again
// after the cancel, and refused).
func (l *Ledger) reportRefused(ctx context.Context, lane string, ids []string, rows []ReportRow, at time.Time, fn func(ReportRow) error) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := l.rdb.Pipeline()
	kept := make([]*redis.BoolCmd, len(ids))
	for i, id := range ids {
		kept[i] = pipe.HExists(ctx, cancelledJobsKey(lane), id[strings.LastIndexByte(id, ':')+1:])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for i, r := range rows {
		if kept[i].Val() {
			continue
		}
		r.State, r.UpdatedAt = ReportCancelled, at
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// refsOfPayload reads ref, ref1 and ref2 from a job's JSON payload (or the refs a cancel kept).
func refsOfPayload(v []byte) (ref, ref1, ref2 string) {
	var p struct{ Ref, Ref1, Ref2 string }
	if json.Unmarshal(v, &p) == nil {
		return p.Ref, p.Ref1, p.Ref2
	}
	return "", "", ""
}
