// Package store keeps every Redis key, script and asynq-layout assumption of wabulk in one
// place: the lanes (lanes.go), tasks written in asynq's layout (asynq.go), and the ledger,
// wabulk's own record beside asynq: per-lane counters, the sent markers that stop a job Kaleyra
// already accepted from being sent again, and the durable dead-letter record that nothing trims
// (asynq keeps at most 10,000 archived tasks per queue).
//
// Every ledger key of a lane shares the lane's hash tag, {<lane>}, with asynq's keys of that
// queue, so each transition is one Lua script, atomic and one round trip, and runs on Redis
// Cluster too. A campaign's counts are the sums over its lanes.
//
// Why the counts stay right across retries, crashes and redrives: every transition is keyed by
// TaskID and idempotent. A job counts as sent only when its sent marker is new (HSETNX; in a
// lane the marker is the task's result, see commit.go) and as dead only when its dead record is
// new; a redrive removes the dead record and decrements in the same script. So a job that a
// crash makes run twice, or a redrive that races a worker, cannot count twice. A lane's waiting,
// active and retrying jobs are what asynq's own lists of the lane hold.
//
// Beside its lanes, each campaign has one campaign scope, "<namespace>:<campaign>", for the
// records that belong to no lane: the recipients its enqueues skipped as suppressed (count and
// set, suppress.go) and the delivery counts of messages older wabulk versions sent outside lanes.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/job"
)

// Ledger reads and writes one queue's records.
type Ledger struct {
	rdb       redis.UniversalClient
	queue     string
	retention time.Duration
	batch     atomic.Pointer[batcher] // set between Batch and its stop
}

// New returns the ledger of queue. retention is how long sent markers live (WABULK_RETENTION,
// the dedupe window); 0 means 24h.
func New(rdb redis.UniversalClient, queue string, retention time.Duration) *Ledger {
	if retention <= 0 {
		retention = defaults.Retention
	}
	return &Ledger{rdb: rdb, queue: queue, retention: retention}
}

// Counts are one campaign's jobs by state; the type is the public job.Counts.
type Counts = job.Counts

// DeadLetter is the durable record of one dead-lettered job.
type DeadLetter struct {
	TaskID  string      `json:"task_id"`
	Code    string      `json:"code"`
	Status  int         `json:"status,omitempty"`
	Message string      `json:"message"`
	Time    time.Time   `json:"time"`
	Attempt int         `json:"attempt"`
	Payload job.Payload `json:"payload"`
	// Raw holds the task's bytes when they could not be decoded into Payload (a poison payload).
	Raw []byte `json:"raw,omitempty"`
	// Scope is the lane (asynq queue) whose ledger holds the record; DeadLetters sets it.
	Scope string `json:"-"`
}

// Retry records a transient failure that asynq will retry. A lane's retrying jobs are read from
// asynq's retry set, so it only counts the retry.
func (l *Ledger) Retry(ctx context.Context, lane, taskID string) error {
	if err := l.rdb.HIncrBy(ctx, countsKey(lane), "retries", 1).Err(); err != nil {
		return fmt.Errorf("ledger: retry: %w", err)
	}
	return nil
}

// KEYS: counts dead deadcodes. ARGV: taskID, record, code.
var deadScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  local oc = cjson.decode(old)['code']
  redis.call('HINCRBY', KEYS[3], oc, -1)
else
  redis.call('HINCRBY', KEYS[1], 'dead', 1)
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
return 1
`)

// Dead writes the durable dead-letter record in scope (a lane). A job dead-lettered twice keeps
// one record (the newest) and counts once.
func (l *Ledger) Dead(ctx context.Context, scope string, d DeadLetter) error {
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	rec, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("ledger: dead: %w", err)
	}
	if err := deadScript.Run(ctx, l.rdb, keys(scope), d.TaskID, rec, d.Code).Err(); err != nil {
		return fmt.Errorf("ledger: dead: %w", err)
	}
	return nil
}

// PoisonCampaign holds the dead letters of payloads too broken to name their campaign and lane
// (`wabulk migrate` puts those it finds there, in the campaign's default lane).
const PoisonCampaign = "_undecodable"

// KEYS: counts dead deadcodes. ARGV: taskID, the record's time.
// Removes the record only when it is the one the caller read (same time): a worker that
// dead-lettered the redriven job again meanwhile wrote a newer record, which must stay.
var undeadScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return false end
local rec = cjson.decode(old)
if rec['time'] ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], rec['code'], -1)
redis.call('HINCRBY', KEYS[1], 'dead', -1)
redis.call('HINCRBY', KEYS[1], 'redriven', 1)
return 1
`)

// Undead removes the dead letter d (as read from DeadLetters, which sets its Scope) once it is
// redriven, and reports whether it did: false when the record is gone or was replaced by a
// newer dead letter of the same job.
func (l *Ledger) Undead(ctx context.Context, d DeadLetter) (bool, error) {
	_, err := undeadScript.Run(ctx, l.rdb, keys(d.Scope), d.TaskID, d.Time.Format(time.RFC3339Nano)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ledger: redrive: %w", err)
	}
	return true, nil
}

// CountRedriven counts a redrive in scope whose record was already gone (see Undead).
func (l *Ledger) CountRedriven(ctx context.Context, scope string) error {
	return l.rdb.HIncrBy(ctx, countsKey(scope), "redriven", 1).Err()
}

// IsDead reports whether the job has a dead-letter record in scope.
func (l *Ledger) IsDead(ctx context.Context, scope, taskID string) (bool, error) {
	return l.rdb.HExists(ctx, deadKey(scope), taskID).Result()
}

// WasSent reports whether the job has a sent marker (Kaleyra accepted it within retention): a
// result on its task in lane.
func (l *Ledger) WasSent(ctx context.Context, lane, taskID string) (bool, error) {
	return l.rdb.HExists(ctx, TaskKey(lane, taskID), "result").Result()
}

// Counts returns a campaign's counts, summed over its lanes and its campaign scope, in one round
// trip per Redis node.
func (l *Ledger) Counts(ctx context.Context, campaign string) (Counts, error) {
	lanes, err := l.scopes(ctx, campaign)
	if err != nil {
		return Counts{}, err
	}
	pipe := l.rdb.Pipeline()
	r := l.queueCounts(ctx, pipe, campaign, lanes, false)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Counts{}, fmt.Errorf("ledger: counts: %w", err)
	}
	c := r.sum()
	c.Campaign = campaign
	return c, nil
}

// CountsOf returns the counts of each of campaigns, in their order, in two round trips (per Redis
// node) however many campaigns.
func (l *Ledger) CountsOf(ctx context.Context, campaigns []string) ([]Counts, error) {
	pipe := l.rdb.Pipeline()
	lanes := make([]*redis.StringSliceCmd, len(campaigns))
	for i, c := range campaigns {
		lanes[i] = pipe.SMembers(ctx, l.campaignKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("ledger: counts: %w", err)
	}
	pipe = l.rdb.Pipeline()
	reads := make([]countsRead, len(campaigns))
	for i, c := range campaigns {
		reads[i] = l.queueCounts(ctx, pipe, c, lanes[i].Val(), false)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("ledger: counts: %w", err)
	}
	out := make([]Counts, len(campaigns))
	for i, r := range reads {
		out[i] = r.sum()
		out[i].Campaign = campaigns[i]
	}
	return out, nil
}

// countsRead is the read of some scopes' counts queued in a pipeline; sum them once it ran.
type countsRead []scopeRead

type scopeRead struct {
	h, codes, fcodes, recent          *redis.MapStringStringCmd
	active, retry, pending, scheduled *redis.IntCmd
	lane                              bool
}

// queueCounts queues the reads of the counts of campaign's lanes and campaign scope in pipe, and
// of their recent sends (rate.go) when recent is set.
func (l *Ledger) queueCounts(ctx context.Context, pipe redis.Pipeliner, campaign string, lanes []string, recent bool) countsRead {
	scopes := append(slices.Clip(lanes), l.campaignScope(campaign))
	reads := make(countsRead, len(scopes))
	for i, s := range scopes {
		r := scopeRead{h: pipe.HGetAll(ctx, countsKey(s)), codes: pipe.HGetAll(ctx, deadCodesKey(s)),
			fcodes: pipe.HGetAll(ctx, failCodesKey(s)), lane: i < len(lanes)}
		if r.lane {
			p := asynqKeys(s)
			r.pending, r.scheduled = pipe.LLen(ctx, p.pending), pipe.ZCard(ctx, p.scheduled)
			r.active, r.retry = pipe.LLen(ctx, p.active), pipe.ZCard(ctx, p.retry)
		}
		if recent {
			r.recent = pipe.HGetAll(ctx, recentKey(s))
		}
		reads[i] = r
	}
	return reads
}

// recent is the scopes' recent sends by period, as recentSends reads them.
func (rs countsRead) recent() []map[string]string {
	var hs []map[string]string
	for _, r := range rs {
		if r.recent != nil {
			hs = append(hs, r.recent.Val())
		}
	}
	return hs
}

// sum adds up the scopes' counts. A lane's waiting, active and retrying jobs are read from
// asynq's own lists, so a task removed there (a cancel, a delete in asynqmon) is seen: the jobs
// neither in a list nor sent nor dead are cancelled. A campaign scope holds no jobs, only counts.
func (rs countsRead) sum() Counts {
	var c Counts
	for _, r := range rs {
		n := func(f string) int64 { v, _ := strconv.ParseInt(r.h.Val()[f], 10, 64); return v }
		enq, done, dead := n("enqueued"), n("completed"), n("dead")
		c.Enqueued += enq
		c.Completed += done
		c.Dead += dead
		c.Retries += n("retries")
		c.Redriven += n("redriven")
		c.Delivered += n("delivered")
		c.Read += n("read")
		c.Failed += n("failed")
		c.NotSent += n("not_sent")
		c.Suppressed += n("suppressed")
		for code, v := range r.fcodes.Val() {
			if k, _ := strconv.ParseInt(v, 10, 64); k > 0 {
				if c.FailedCodes == nil {
					c.FailedCodes = map[string]int64{}
				}
				c.FailedCodes[code] += k
			}
		}
		if r.lane {
			// What asynq holds, within what the ledger says is unfinished: a job being sent is
			// counted completed just before asynq moves it out of active.
			left := max(0, enq-done-dead-n("suppressed"))
			active := min(r.active.Val(), left)
			retry := min(r.retry.Val(), left-active)
			waiting := min(r.pending.Val()+r.scheduled.Val(), left-active-retry)
			c.Active += active
			c.Retry += retry
			c.Pending += waiting
			c.Cancelled += left - active - retry - waiting
		}
		for code, v := range r.codes.Val() {
			if k, _ := strconv.ParseInt(v, 10, 64); k > 0 {
				if c.DeadCodes == nil {
					c.DeadCodes = map[string]int64{}
				}
				c.DeadCodes[code] += k
			}
		}
	}
	return c
}

// DeadLetters calls fn for each dead letter of campaign whose code matches (empty: any), in
// no particular order, until fn returns false. It scans in batches, so a campaign with millions
// of dead letters is read in bounded memory.
func (l *Ledger) DeadLetters(ctx context.Context, campaign, code string, fn func(DeadLetter) bool) error {
	scopes, err := l.scopes(ctx, campaign)
	if err != nil {
		return err
	}
	for _, scope := range scopes {
		if more, err := l.deadLetters(ctx, scope, code, fn); err != nil || !more {
			return err
		}
	}
	return nil
}

// deadLetters is DeadLetters for one scope; it reports whether fn wants more.
func (l *Ledger) deadLetters(ctx context.Context, scope, code string, fn func(DeadLetter) bool) (bool, error) {
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, deadKey(scope), cursor, "", 500).Result()
		if err != nil {
			return false, fmt.Errorf("ledger: dead letters: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			var d DeadLetter
			if json.Unmarshal([]byte(kv[i+1]), &d) != nil {
				d = DeadLetter{TaskID: kv[i], Code: "unreadable", Message: "dead-letter record is not valid JSON"}
			}
			if code != "" && d.Code != code {
				continue
			}
			d.Scope = scope
			if !fn(d) {
				return false, nil
			}
		}
		if cursor = next; cursor == 0 {
			return true, nil
		}
	}
}
