package store

// Dispatch: how workers take a lane's tasks. A worker takes a task out of Redis only once its
// sender may send it now (it holds a rate token), so whatever decides whether a job may go (a
// paused lane or campaign, a cancel, the suppression list) is decided at that moment, and no
// job waits on the rate limiter outside Redis, out of reach of those controls.
//
// The task moves through asynq v0.26's own layout, as asynq's processor would move it
// (rdb.Dequeue, MarkAsComplete, Retry, Archive, Requeue, ListLeaseExpired, ForwardIfReady and
// DeleteExpiredCompletedTasks), so asynqmon, the Inspector and the ledger's counts see the same
// states: pending → active (with a lease) → completed | retry | archived. Each step is one
// script on the lane's slot. Two indexes in the namespace's slot let the upkeep find the few
// lanes that need it, instead of visiting every lane:
//
//	wabulk:{ns}:due     ZSET lane -> the earliest Unix second a retry or scheduled task of it is due
//	wabulk:{ns}:leased  ZSET lane -> the latest lease expiry (Unix second) given to a task of it
//
// Both are written after the lane's own script (another slot: no transaction on a cluster), so
// an entry may outlive its reason (the upkeep drops it when it finds nothing) but is never
// missing while a reason lasts: a retry writes the due entry after the task is in the retry set,
// and the forwarder re-reads the lane after it has rewritten the entry (ForwardDue).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseDuration is how long a taken task is a worker's before the upkeep may give it to another
// (asynq's rdb.LeaseDuration). A worker extends the lease of the tasks it holds.
const LeaseDuration = 30 * time.Second

// statsTTL is how long asynq keeps a queue's daily processed and failed counters.
const statsTTL = 90 * 24 * time.Hour

// Asynq's archive bounds (rdb.maxArchiveSize, archivedExpirationInDays).
const (
	maxArchiveSize = 10000
	archiveDays    = 90
)

// IndexEvery is how often a worker that keeps taking from a lane must record it in the lease
// index. An entry's score is the lease expiry it was written with, so while takes go on it
// stays in the future, and Expired drops only entries whose score has passed.
const IndexEvery = 5 * time.Second

// ErrLeaseExpired is the error a task gets when its worker's lease ran out (asynq's text).
var ErrLeaseExpired = errors.New("asynq: task lease expired")

// Take outcomes.
const (
	TakeEmpty     = 0 // nothing pending
	TakeTaken     = 1
	TakeHeld      = 2 // the lane is paused
	TakeCancelled = 3 // the lane's campaign is cancelled
)

// KEYS: pending paused active lease cancelled. ARGV: lease expiry (Unix s), task key prefix.
// Returns {outcome} or {1, msg, result or false, pending tasks left}.
var takeScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 1 then return {2} end
if redis.call("EXISTS", KEYS[5]) == 1 then return {3} end
local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
if not id then return {0} end
local key = ARGV[2] .. id
redis.call("HSET", key, "state", "active")
redis.call("HDEL", key, "pending_since")
redis.call("ZADD", KEYS[4], ARGV[1], id)
local v = redis.call("HMGET", key, "msg", "result")
return {1, v[1], v[2], redis.call("LLEN", KEYS[1])}
`)

// The statistics asynq keeps per queue (processed and failed, per day and in total).
const luaStats = `
local function stat(day, total, expireat)
  local n = redis.call("INCR", day)
  if tonumber(n) == 1 then redis.call("EXPIREAT", day, expireat) end
  local t = redis.call("GET", total)
  if t and tonumber(t) >= 9223372036854775807 then redis.call("SET", total, 1) else redis.call("INCR", total) end
end
local function leave(active, lease, id)
  if redis.call("LREM", active, 0, id) == 0 then return false end
  redis.call("ZREM", lease, id)
  return true
end
`

// KEYS: active lease completed task processed:<day> processed. ARGV: id, stats expiry, task
// expiry, message.
var completeScript = redis.NewScript(luaStats + `
if not leave(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], "msg", ARGV[4], "state", "completed")
stat(KEYS[5], KEYS[6], ARGV[2])
return 1
`)

// KEYS: active lease retry task processed:<day> failed:<day> processed failed. ARGV: id,
// message, retry at, stats expiry, 1 when a failure. Returns false when the task is not active.
var retryTaskScript = redis.NewScript(luaStats + `
if not leave(KEYS[1], KEYS[2], ARGV[1]) then return false end
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], "msg", ARGV[2], "state", "retry")
if ARGV[5] == "1" then
  stat(KEYS[5], KEYS[7], ARGV[4])
  stat(KEYS[6], KEYS[8], ARGV[4])
end
return 1
`)

// KEYS: active lease archived task processed:<day> failed:<day> processed failed. ARGV: id,
// message, now, cutoff, max size, stats expiry, task key prefix.
var archiveScript = redis.NewScript(luaStats + `
if not leave(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
local old = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", ARGV[4])
local extra = redis.call("ZRANGE", KEYS[3], 0, -tonumber(ARGV[5]) - 1)
for _, set in ipairs({old, extra}) do
  for _, id in ipairs(set) do
    redis.call("DEL", ARGV[7] .. id)
    redis.call("ZREM", KEYS[3], id)
  end
end
redis.call("HSET", KEYS[4], "msg", ARGV[2], "state", "archived")
stat(KEYS[5], KEYS[7], ARGV[6])
stat(KEYS[6], KEYS[8], ARGV[6])
return 1
`)

// KEYS: active lease pending task. ARGV: id. Puts a taken task back at the head of its lane.
var requeueScript = redis.NewScript(luaStats + `
if not leave(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending")
return 1
`)

// KEYS: active lease task counts. ARGV: id. A taken task whose recipient is on the
// suppression list: it leaves the lane unsent and counts as suppressed.
var dropScript = redis.NewScript(luaStats + `
if not leave(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call("DEL", KEYS[3])
redis.call("HINCRBY", KEYS[4], "suppressed", 1)
return 1
`)

// earliest is the lowest score of two sorted sets, -1 when both are empty.
const luaEarliest = `
local function earliest(a, b)
  local first = -1
  for _, k in ipairs({a, b}) do
    local z = redis.call("ZRANGE", k, 0, 0, "WITHSCORES")
    if #z > 0 and (first < 0 or tonumber(z[2]) < first) then first = tonumber(z[2]) end
  end
  return first
end
`

// KEYS: scheduled retry pending. ARGV: now (Unix s), task key prefix, now (Unix ns). Moves up
// to 100 due tasks of each set to pending (asynq's forwardCmd; wabulk tasks have no group) and
// returns how many it moved and the earliest score left (-1: none).
var forwardScript = redis.NewScript(luaEarliest + `
local n = 0
for i = 1, 2 do
  local ids = redis.call("ZRANGEBYSCORE", KEYS[i], "-inf", ARGV[1], "LIMIT", 0, 100)
  for _, id in ipairs(ids) do
    redis.call("LPUSH", KEYS[3], id)
    redis.call("ZREM", KEYS[i], id)
    redis.call("HSET", ARGV[2] .. id, "state", "pending", "pending_since", ARGV[3])
    n = n + 1
  end
end
return {n, tostring(earliest(KEYS[1], KEYS[2]))}
`)

// KEYS: scheduled retry. The earliest score of either (-1: none).
var earliestScript = redis.NewScript(luaEarliest + `return tostring(earliest(KEYS[1], KEYS[2]))`)

// KEYS: lease. ARGV: cutoff, task key prefix. The messages of tasks whose lease ended before the
// cutoff, and how many leases are left after them (asynq's listLeaseExpiredCmd).
var expiredScript = redis.NewScript(`
local res = {}
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
for _, id in ipairs(ids) do
  local v = redis.call("HGET", ARGV[2] .. id, "msg")
  if v then table.insert(res, v) else redis.call("ZREM", KEYS[1], id) end
end
table.insert(res, tostring(redis.call("ZCARD", KEYS[1])))
return res
`)

// KEYS: an index. ARGV: member, the score it was read with. Removes the member if its score is
// unchanged.
var dropIfScoreScript = redis.NewScript(`
local s = redis.call("ZSCORE", KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then redis.call("ZREM", KEYS[1], ARGV[1]) return 1 end
return 0
`)

// Taken is a task a worker took from its lane.
type Taken struct {
	Lane    string
	ID      string
	Type    string
	Payload []byte
	// Retry is the task's retry budget, Retried the failed attempts so far.
	Retry, Retried int
	// Prior is the task's result (the sent marker) when it has one: Kaleyra accepted it before.
	Prior string
	// Left is how many tasks the lane had pending after this one was taken.
	Left int64
	// Bad is why the stored message could not be read; the caller dead-letters such a task.
	Bad error
	msg []byte // the TaskMessage as stored
}

// Take takes the next pending task of lane and leases it to the caller for LeaseDuration. The
// outcome is TakeTaken with the task, or why there was none: TakeEmpty, TakeHeld (paused) or
// TakeCancelled. With index, the lane is recorded in the namespace's lease index after the
// lane's script, so the upkeep finds the lease should the worker die; a caller that indexed the
// lane less than IndexEvery ago may leave it out (Expired keeps an entry that recent).
func (l *Ledger) Take(ctx context.Context, lane string, index bool) (int, *Taken, error) {
	p := asynqKeys(lane)
	expiry := time.Now().Add(LeaseDuration).Unix()
	res, err := takeScript.Run(ctx, l.rdb, []string{p.pending, p.paused, p.active, p.lease,
		cancelledKey(lane)}, expiry, p.task).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("take from %s: %w", lane, err)
	}
	outcome, _ := res[0].(int64)
	if outcome != TakeTaken {
		return int(outcome), nil, nil
	}
	if index {
		if err := l.rdb.ZAddGT(ctx, l.leasedKey(), redis.Z{Score: float64(expiry), Member: lane}).Err(); err != nil {
			return 0, nil, fmt.Errorf("take from %s: %w", lane, err)
		}
	}
	raw, _ := res[1].(string)
	t, err := decodeTask([]byte(raw))
	t.Bad = err
	t.Lane = lane
	if prior, ok := res[2].(string); ok {
		t.Prior = prior
	}
	t.Left, _ = res[3].(int64)
	return TakeTaken, t, nil
}

// CompleteTask marks a taken task completed, kept for the retention (asynq's MarkAsComplete). Its
// result, when it was sent, is the sent marker the ledger wrote.
func (l *Ledger) CompleteTask(ctx context.Context, t *Taken) error {
	now := time.Now()
	p := asynqKeys(t.Lane)
	pd, _ := statsKeys(t.Lane, now)
	msg := markCompleted(t.msg, now)
	return l.finish(completeScript.Run(ctx, l.rdb, []string{p.active, p.lease, p.completed, p.task + t.ID, pd, p.processed},
		t.ID, now.Add(statsTTL).Unix(), now.Add(l.retention).Unix(), msg).Err())
}

// RetryTask puts a taken task in its lane's retry set until at, with errMsg as its last error; a
// failure uses one of its retries (asynq's Retry). The namespace's due index learns of it.
func (l *Ledger) RetryTask(ctx context.Context, t *Taken, at time.Time, errMsg string, failure bool) error {
	now := time.Now()
	p := asynqKeys(t.Lane)
	pd, fd := statsKeys(t.Lane, now)
	retried := int64(t.Retried)
	fail := 0
	if failure {
		retried++
		fail = 1
	}
	msg := markRetried(t.msg, retried, now, errMsg)
	err := retryTaskScript.Run(ctx, l.rdb, []string{p.active, p.lease, p.retry, p.task + t.ID, pd, fd, p.processed, p.failed},
		t.ID, msg, at.Unix(), now.Add(statsTTL).Unix(), fail).Err()
	if errors.Is(err, redis.Nil) {
		return nil // not active any more: the upkeep took it back
	}
	if err != nil {
		return fmt.Errorf("retry %s: %w", t.ID, err)
	}
	return l.markDue(ctx, t.Lane, at.Unix())
}

func (l *Ledger) markDue(ctx context.Context, lane string, at int64) error {
	return l.rdb.ZAddLT(ctx, l.dueKey(), redis.Z{Score: float64(at), Member: lane}).Err()
}

// ArchiveTask moves a taken task to its lane's archive with errMsg as its last error (asynq's
// Archive): a dead letter in asynq's view.
func (l *Ledger) ArchiveTask(ctx context.Context, t *Taken, errMsg string) error {
	now := time.Now()
	p := asynqKeys(t.Lane)
	pd, fd := statsKeys(t.Lane, now)
	msg := markArchived(t.msg, now, errMsg)
	return l.finish(archiveScript.Run(ctx, l.rdb, []string{p.active, p.lease, p.archived, p.task + t.ID, pd, fd, p.processed, p.failed},
		t.ID, msg, now.Unix(), now.AddDate(0, 0, -archiveDays).Unix(), maxArchiveSize, now.Add(statsTTL).Unix(), p.task).Err())
}

// RequeueTask puts a taken task back at the head of its lane, unattempted.
func (l *Ledger) RequeueTask(ctx context.Context, t *Taken) error {
	p := asynqKeys(t.Lane)
	return l.finish(requeueScript.Run(ctx, l.rdb, []string{p.active, p.lease, p.pending, p.task + t.ID}, t.ID).Err())
}

// DropSuppressed takes a task whose recipient is on the suppression list out of its lane
// unsent, counts it suppressed in the lane, and lists the recipient among the campaign's
// suppressed (the report's rows).
func (l *Ledger) DropSuppressed(ctx context.Context, t *Taken, campaign, to string) error {
	p := asynqKeys(t.Lane)
	n, err := dropScript.Run(ctx, l.rdb, []string{p.active, p.lease, p.task + t.ID, countsKey(t.Lane)}, t.ID).Int()
	if err != nil || n == 0 {
		return l.finish(err)
	}
	k := l.campaignSuppressedKey(campaign)
	pipe := l.rdb.Pipeline()
	pipe.SAdd(ctx, k, to)
	pipe.Expire(ctx, k, l.retention)
	_, err = pipe.Exec(ctx)
	return l.finish(err)
}

func (l *Ledger) finish(err error) error {
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// ExtendLeases extends the leases of tasks a worker still holds, by lane, to LeaseDuration
// from now.
func (l *Ledger) ExtendLeases(ctx context.Context, held map[string][]string) error {
	if len(held) == 0 {
		return nil
	}
	expiry := float64(time.Now().Add(LeaseDuration).Unix())
	pipe := l.rdb.Pipeline()
	for lane, ids := range held {
		zs := make([]redis.Z, len(ids))
		for i, id := range ids {
			zs[i] = redis.Z{Score: expiry, Member: id}
		}
		pipe.ZAddXX(ctx, asynqKeys(lane).lease, zs...)
		pipe.ZAddGT(ctx, l.leasedKey(), redis.Z{Score: expiry, Member: lane})
	}
	_, err := pipe.Exec(ctx)
	return err
}

// ForwardDue moves the due retries and scheduled tasks of every lane the due index lists as due
// to their pending lists, and returns the lanes that got work (so workers can be told).
func (l *Ledger) ForwardDue(ctx context.Context) ([]string, error) {
	now := time.Now()
	due, err := l.rdb.ZRangeByScoreWithScores(ctx, l.dueKey(), &redis.ZRangeBy{Min: "-inf",
		Max: strconv.FormatInt(now.Unix(), 10), Count: 500}).Result()
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	var woken []string
	for _, z := range due {
		lane := z.Member.(string)
		n, err := l.forwardLane(ctx, lane, z.Score, now)
		if err != nil {
			return woken, err
		}
		if n > 0 {
			woken = append(woken, lane)
		}
	}
	return woken, nil
}

// forwardLane forwards lane's due tasks and rewrites its due entry, read with score: dropped
// when nothing is left (unless a retry wrote a new score meanwhile), or set to the earliest
// left. It then reads the lane again, so a retry that landed after the forward but wrote its
// entry before the rewrite is not lost.
func (l *Ledger) forwardLane(ctx context.Context, lane string, score float64, now time.Time) (int64, error) {
	p := asynqKeys(lane)
	keys := []string{p.scheduled, p.retry, p.pending}
	res, err := forwardScript.Run(ctx, l.rdb, keys, now.Unix(), p.task, now.UnixNano()).Slice()
	if err != nil {
		return 0, fmt.Errorf("forward %s: %w", lane, err)
	}
	n, _ := res[0].(int64)
	next, _ := strconv.ParseFloat(fmt.Sprint(res[1]), 64)
	if next >= 0 && next <= float64(now.Unix()) && n >= 100 {
		return n, nil // more due than one call moves: the entry stays, the next pass goes on
	}
	if err := dropIfScoreScript.Run(ctx, l.rdb, []string{l.dueKey()}, lane, score).Err(); err != nil {
		return n, fmt.Errorf("forward %s: %w", lane, err)
	}
	// Re-read: anything in the sets now is either seen here or wrote its own entry after the drop.
	raw, err := earliestScript.Run(ctx, l.rdb, keys[:2]).Text()
	if err != nil {
		return n, fmt.Errorf("forward %s: %w", lane, err)
	}
	if first, _ := strconv.ParseFloat(raw, 64); first >= 0 {
		if err := l.markDue(ctx, lane, int64(first)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Expired returns the tasks whose lease ended more than grace ago, in the lanes the lease index
// lists as holding leases (the lanes with jobs in flight: few, whatever the number of lanes),
// and drops from the index the lanes that hold none.
func (l *Ledger) Expired(ctx context.Context, grace time.Duration) ([]*Taken, error) {
	cutoff := time.Now().Add(-grace).Unix()
	lanes, err := l.rdb.ZRangeWithScores(ctx, l.leasedKey(), 0, 999).Result()
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	var out []*Taken
	for _, z := range lanes {
		lane := z.Member.(string)
		p := asynqKeys(lane)
		res, err := expiredScript.Run(ctx, l.rdb, []string{p.lease}, cutoff, p.task).StringSlice()
		if err != nil {
			return out, fmt.Errorf("expired leases of %s: %w", lane, err)
		}
		for _, raw := range res[:len(res)-1] {
			t, err := decodeTask([]byte(raw))
			if err != nil {
				continue
			}
			t.Lane = lane
			out = append(out, t)
		}
		if res[len(res)-1] == "0" && z.Score < float64(time.Now().Unix()) {
			// No lease left, and no take indexed the lane within a lease (takes may leave the
			// index out for IndexEvery): drop the entry unless a take raised it meanwhile.
			if err := dropIfScoreScript.Run(ctx, l.rdb, []string{l.leasedKey()}, lane, z.Score).Err(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// KEYS: pending active retry scheduled completed archived reconcile-mark. ARGV: now, task key
// prefix, batch (0: no janitor this pass). Deletes up to a batch of completed tasks whose
// retention ended (asynq's janitor) and returns the pending and active counts, the earliest
// retry or scheduled score (-1: none) and 1 when asynq archived a task after the reconcile mark.
var sweepScript = redis.NewScript(luaEarliest + `
if tonumber(ARGV[3]) > 0 then
  local ids = redis.call("ZRANGEBYSCORE", KEYS[5], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
  for _, id in ipairs(ids) do
    redis.call("DEL", ARGV[2] .. id)
    redis.call("ZREM", KEYS[5], id)
  end
end
local since = redis.call("GET", KEYS[7])
if since then since = "(" .. since else since = "-inf" end
local archived = #redis.call("ZRANGEBYSCORE", KEYS[6], since, "+inf", "LIMIT", 0, 1)
return {redis.call("LLEN", KEYS[1]), redis.call("LLEN", KEYS[2]), tostring(earliest(KEYS[3], KEYS[4])), archived}
`)

// Swept is what the sweep found in one lane.
type Swept struct {
	Lane string
	// Pending and Active are the lane's waiting and taken tasks; Due is the Unix second its
	// earliest retry or scheduled task is due, -1 when it has none.
	Pending, Active int64
	Due             float64
	// Archived: asynq archived a task after the reconcile mark (for the reconciler).
	Archived bool
}

// Backlog is the lane's tasks still to be sent.
func (s Swept) Backlog() bool { return s.Pending+s.Active > 0 || s.Due >= 0 }

// Sweep is the upkeep's slow pass over lanes, one script call each: it deletes the completed
// tasks whose retention ended (when janitor), makes sure the due index lists a lane that has
// retries or scheduled tasks, and reports what each lane holds: the pending ones for workers
// that missed their wake-up, the backlog for retirement, new archives for the reconciler.
func (l *Ledger) Sweep(ctx context.Context, lanes []string, janitor bool) ([]Swept, error) {
	now := time.Now().Unix()
	batch := 0
	if janitor {
		batch = 1000
	}
	run := func() ([]*redis.Cmd, error) {
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(lanes))
		for i, lane := range lanes {
			p := asynqKeys(lane)
			cmds[i] = sweepScript.EvalSha(ctx, pipe, []string{p.pending, p.active, p.retry, p.scheduled,
				p.completed, p.archived, l.ReconcileMark(lane)}, now, p.task, batch)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A Redis that has not seen the script (a restart, a new node): load it and go again.
		if err := sweepScript.Load(ctx, l.rdb).Err(); err != nil {
			return nil, fmt.Errorf("sweep: %w", err)
		}
		cmds, err = run()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	out := make([]Swept, 0, len(lanes))
	fix := l.rdb.Pipeline()
	for i, c := range cmds {
		v, err := c.Slice()
		if err != nil || len(v) != 4 {
			continue
		}
		s := Swept{Lane: lanes[i]}
		s.Pending, _ = v[0].(int64)
		s.Active, _ = v[1].(int64)
		s.Due, _ = strconv.ParseFloat(fmt.Sprint(v[2]), 64)
		n, _ := v[3].(int64)
		s.Archived = n > 0
		if s.Due >= 0 {
			fix.ZAddLT(ctx, l.dueKey(), redis.Z{Score: s.Due, Member: lanes[i]})
		}
		out = append(out, s)
	}
	if _, err := fix.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("sweep: %w", err)
	}
	return out, nil
}

// Wake tells workers that lanes have pending work (PubSub, on the channel new lanes are
// announced on). A lost message costs latency only: the upkeep's sweep wakes them again.
func (l *Ledger) Wake(ctx context.Context, lanes ...string) error {
	if len(lanes) == 0 {
		return nil
	}
	pipe := l.rdb.Pipeline()
	for _, ln := range lanes {
		pipe.Publish(ctx, l.lanesChannel(), ln)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// NamespacePaused reports whether the namespace (every lane) is paused: `wabulk queue pause`
// without a queue sets asynq's flag of the queue named after the namespace.
func (l *Ledger) NamespacePaused(ctx context.Context) (bool, error) {
	n, err := l.rdb.Exists(ctx, asynqPausedKey(l.queue)).Result()
	return n == 1, err
}

// LaneInfo reads one lane's registry entry; false when it has none.
func (l *Ledger) LaneInfo(ctx context.Context, name string) (Lane, bool, error) {
	raw, err := l.rdb.HGet(ctx, l.lanesInfoKey(), name).Result()
	if errors.Is(err, redis.Nil) {
		return Lane{}, false, nil
	}
	if err != nil {
		return Lane{}, false, err
	}
	ln, ok := parseLane(name, raw)
	return ln, ok, nil
}

// LaneFromName is the lane named name with priority, its campaign and sender read from the
// name; false when the priority is empty or the name has no lane's form.
func LaneFromName(name string, priority Priority) (Lane, bool) {
	if _, err := ParsePriority(string(priority)); err != nil || priority == "" {
		return Lane{}, false
	}
	ln, ok := parseLane(name, "")
	ln.Priority = priority
	return ln, ok
}

// IsSuppressed reports whether one number is on the suppression list.
func (l *Ledger) IsSuppressed(ctx context.Context, number string) (bool, error) {
	return l.rdb.HExists(ctx, l.suppressedKey(), number).Result()
}
