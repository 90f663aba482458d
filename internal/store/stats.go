package store

// What the lane exporter (package metrics) reads: each queue's tasks by state and whether it is
// paused, and the lease that makes one process of a namespace the exporter. The lease key lives
// in the namespace's slot:
//
//	wabulk:{ns}:exporter   STRING the id of the process that exports the lanes, with a TTL

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// QueueStats are one asynq queue's tasks by state, whether the queue is paused, and asynq's
// counters of the day.
type QueueStats struct {
	Pending, Active, Scheduled, Retry, Archived, Completed int64
	// ScheduledDue are the scheduled tasks due before the time Stats was asked about.
	ScheduledDue int64
	Paused       bool
	// Exists is whether asynq lists the queue (asynq:queues).
	Exists bool
	// ProcessedToday and FailedToday are asynq's counters of the UTC day.
	ProcessedToday, FailedToday int64
	// OldestPending is when the oldest pending task became pending; zero when none is.
	OldestPending time.Time
}

// Runnable is the work a worker can take up by then: pending, active and retrying tasks and
// the scheduled ones due; nothing while the queue is paused.
func (s QueueStats) Runnable() int64 {
	if s.Paused {
		return 0
	}
	return s.Pending + s.Active + s.Retry + s.ScheduledDue
}

// KEYS: a queue's asynq pending, active, scheduled, retry, archived, completed and paused keys,
// and its processed and failed counters of the day. ARGV: a Unix time in seconds (asynq scores
// scheduled tasks by when they are due), the prefix of the queue's task keys. Returns the sizes,
// the scheduled tasks due by that time, 1 when the queue is paused, the day's counters, and when
// the oldest pending task became pending (Unix ns, 0 for none), as asynq's Inspector reads it.
const queueStatsScript = `
local since = 0
local oldest = redis.call('LINDEX', KEYS[1], -1)
if oldest then since = tonumber(redis.call('HGET', ARGV[2] .. oldest, 'pending_since')) or 0 end
return {redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6]),
  redis.call('ZCOUNT', KEYS[3], '-inf', ARGV[1]), redis.call('EXISTS', KEYS[7]),
  tonumber(redis.call('GET', KEYS[8]) or '0'), tonumber(redis.call('GET', KEYS[9]) or '0'), since}
`

// Stats reads the stats of queues (lanes) in one pipeline (one round trip
// per Redis node), counting as due the scheduled tasks due by `due`.
func (l *Ledger) Stats(ctx context.Context, queues []string, due time.Time) ([]QueueStats, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	pipe := l.rdb.Pipeline()
	members := make([]any, len(queues))
	for i, q := range queues {
		members[i] = q
	}
	exist := pipe.SMIsMember(ctx, allQueuesKey, members...)
	cmds := make([]*redis.Cmd, len(queues))
	at := strconv.FormatInt(due.Unix(), 10)
	day := time.Now().UTC().Format("2006-01-02")
	for i, q := range queues {
		p := asynqKeys(q)
		cmds[i] = pipe.Eval(ctx, queueStatsScript, []string{p.pending, p.active, p.scheduled, p.retry,
			p.archived, p.completed, p.paused, p.processedOn(day), p.failedOn(day)}, at, p.task)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]QueueStats, len(queues))
	for i, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil || len(v) != 11 {
			return nil, fmt.Errorf("queue stats of %s: %v", queues[i], err)
		}
		out[i] = QueueStats{Pending: v[0], Active: v[1], Scheduled: v[2], Retry: v[3], Archived: v[4],
			Completed: v[5], ScheduledDue: v[6], Paused: v[7] == 1, Exists: exist.Val()[i],
			ProcessedToday: v[8], FailedToday: v[9]}
		if v[10] > 0 {
			out[i].OldestPending = time.Unix(0, v[10])
		}
	}
	return out, nil
}

// QueueNames lists every queue asynq knows on this Redis.
func (l *Ledger) QueueNames(ctx context.Context) ([]string, error) {
	return l.rdb.SMembers(ctx, allQueuesKey).Result()
}

// QueueCount is how many queues asynq knows on this Redis.
func (l *Ledger) QueueCount(ctx context.Context) (int64, error) {
	return l.rdb.SCard(ctx, allQueuesKey).Result()
}

// KEYS: the lease. ARGV: the holder's id, the TTL in milliseconds. Takes the lease when it is
// free, renews it when id holds it; returns 1 when id holds it afterwards.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// KEYS: the lease. ARGV: the holder's id. Frees the lease if id holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// HoldLease takes or renews the namespace's lease name for id for ttl and reports whether id
// holds it. Unlike Lock, the holder keeps it as long as it renews in time, so the work stays
// with one process instead of moving at every tick.
func (l *Ledger) HoldLease(ctx context.Context, name, id string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, l.rdb, []string{l.lockKey(name)}, id, ttl.Milliseconds()).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return n == 1, nil
}

// ReleaseLease frees the lease name if id holds it, so another process takes it at its next try
// instead of after the TTL.
func (l *Ledger) ReleaseLease(ctx context.Context, name, id string) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.lockKey(name)}, id).Err()
}
