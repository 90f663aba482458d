package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/batch"
)

// Begin and Sent are the two ledger writes on every message's path. Each call is an op; a
// Ledger in Batch mode writes the ops of concurrent callers together ("group commit"): while
// one pipeline is in flight the next calls queue, and the next pipeline carries all of them,
// with one script call per lane for its Sent ops (a lane's Begin: one EXISTS and a read per job,
// no script). Under load, N jobs in flight cost one round trip
// instead of N; a lone call goes out at once. Outside Batch mode a call's op is written alone,
// on the caller's goroutine. Every op is idempotent, so a pipeline may be written twice.

type opKind uint8

const (
	opBegin opKind = iota
	opSent
)

type op struct {
	kind   opKind
	scope  string
	taskID string
	answer []byte // opSent: Kaleyra's answer, the task's result
	msgID  string // opSent: Kaleyra's message id, mapped to the job for status callbacks
	// Set by commit.
	prior       string
	alreadySent bool
	parked      string // opSent: a status callback that arrived before the message id was mapped
	err         error
	done        chan struct{} // closed when set, in Batch mode
}

// The sent marker. In a lane it is the task's result in asynq's own task hash (TaskKey), which
// shares the lane's slot: the first write of a result counts the job sent (HSETNX), and Begin
// reads it back. The task hash lives as long as asynq keeps the completed task
// (WABULK_RETENTION), so one copy of Kaleyra's answer is both what asynqmon shows and what stops
// a second send. Lane counts read asynq's own lists for waiting, active and retrying jobs, so a
// lane's Begin writes nothing: it is one HGET per job and one EXISTS (the cancelled flag) per
// batch, plain commands in the batch's pipeline.

// ErrCancelled is Begin's answer for a job of a cancelled campaign: it must not be sent.
var ErrCancelled = errors.New("the campaign is cancelled")

// Begin reads the sent marker of the job, a task of lane. When the job was already sent (a crash
// between Kaleyra's answer and asynq's ack made it run again) it returns the stored answer and
// true: do not send again. A job of a cancelled campaign is ErrCancelled. The dispatcher's Take
// reads the same marker when it takes a task.
func (l *Ledger) Begin(ctx context.Context, lane, taskID string) (prior string, alreadySent bool, err error) {
	o := &op{kind: opBegin, scope: lane, taskID: taskID}
	l.do(ctx, o)
	if errors.Is(o.err, ErrCancelled) {
		return "", false, ErrCancelled
	}
	if o.err != nil {
		return "", false, fmt.Errorf("ledger: begin: %w", o.err)
	}
	return o.prior, o.alreadySent, nil
}

// A job that has a dead-letter record and is then sent was dead-lettered by an attempt whose
// archive never reached asynq (Redis went away first, so asynq ran the job again), or redriven
// before its record was removed: it counts as sent, and the stale record goes.
const luaUndead = `
local function undead(deadkey, codeskey, id)
  local old = redis.call('HGET', deadkey, id)
  if not old then return 0 end
  redis.call('HDEL', deadkey, id)
  redis.call('HINCRBY', codeskey, cjson.decode(old)['code'], -1)
  return 1
end
local function counted(countskey, n, undeadn)
  if n > 0 then redis.call('HINCRBY', countskey, 'completed', n) end
  if undeadn > 0 then redis.call('HINCRBY', countskey, 'dead', -undeadn) end
end
`

// KEYS: counts dead deadcodes recent, then the task hash of each job (a lane's). ARGV: taskID for
// each job, then its answer. A job's first result counts it sent, in the counts and in the
// recent sends (rate.go); the dead-letter hash is read only when the lane has one.
var laneSentScript = redis.NewScript(luaReplicate + luaUndead + luaRecent + `
local m = #KEYS - 4
local anydead = redis.call('EXISTS', KEYS[2]) == 1
local n, un = 0, 0
for i = 1, m do
  if redis.call('HSETNX', KEYS[4+i], 'result', ARGV[m+i]) == 1 then
    n = n + 1
    if anydead then un = un + undead(KEYS[2], KEYS[3], ARGV[i]) end
  end
end
counted(KEYS[1], n, un)
recent(KEYS[4], n)
return n
`)

// Sent records that Kaleyra accepted the job: answer becomes the task's result (what asynqmon
// shows) and the sent marker for the retention window. Every accepted message passes this way.
func (l *Ledger) Sent(ctx context.Context, lane, taskID string, answer []byte) error {
	return l.SentMessage(ctx, lane, taskID, "", answer)
}

// SentMessage is Sent that also maps Kaleyra's message id msgID (empty: none) to the job in the
// same round trip, so the status callbacks find it, and applies a callback that came first.
func (l *Ledger) SentMessage(ctx context.Context, lane, taskID, msgID string, answer []byte) error {
	if !ValidMessageID(msgID) {
		msgID = ""
	}
	o := &op{kind: opSent, scope: lane, taskID: taskID, msgID: msgID, answer: answer}
	l.do(ctx, o)
	if o.err != nil {
		return fmt.Errorf("ledger: sent: %w", o.err)
	}
	if o.parked != "" {
		// Rare: the callback beat the worker's record. Its own round trips, after the marker.
		if err := l.applyParked(ctx, lane, taskID, msgID, o.parked); err != nil {
			return fmt.Errorf("ledger: sent: %w", err)
		}
	}
	return nil
}

// do writes o: through the batcher in Batch mode, else alone.
func (l *Ledger) do(ctx context.Context, o *op) {
	if b := l.batch.Load(); b != nil {
		o.done = make(chan struct{})
		if b.submit(o) {
			// Not cut short by ctx: the op is written whatever the caller does next, and the
			// caller must know how it ended.
			<-o.done
			return
		}
	}
	l.commit(ctx, []*op{o})
}

// Batch puts the ledger in Batch mode: Begin and Sent of concurrent callers share round trips,
// at most max ops in one pipeline, until stop is called. Calls after stop are written alone.
// Batch must not be called again before stop.
func (l *Ledger) Batch(max int) (stop func()) {
	b := &batcher{ops: make(chan *op, max)}
	b.wg.Go(func() {
		for group := range batch.Lingering(b.ops, max, groupLinger, mayWait) {
			l.commit(context.Background(), group)
			for _, o := range group {
				close(o.done)
			}
		}
	})
	l.batch.Store(b)
	return func() {
		l.batch.CompareAndSwap(b, nil)
		b.mu.Lock()
		if !b.closed {
			b.closed = true
			close(b.ops)
		}
		b.mu.Unlock()
		b.wg.Wait()
	}
}

// groupLinger is how long a batch of Begin ops waits to fill when the batch before it shared a
// round trip: at a few thousand messages a second each round trip then carries several ops
// instead of one or two, which cuts Redis commands and CPU per message; the wait is small beside
// Kaleyra's answer time, and a lone op (no load) is never held.
const groupLinger = 2 * time.Millisecond

// mayWait says which ops a batch may linger for. Not a Sent op: Kaleyra has accepted its message,
// and until the marker is written a crash would send it again (the sent-twice window).
func mayWait(o *op) bool { return o.kind == opBegin }

type batcher struct {
	ops    chan *op
	wg     sync.WaitGroup
	mu     sync.RWMutex // held for reading while submitting, so stop never closes ops under a sender
	closed bool
}

// submit queues o and reports whether it did (false once stopped).
func (b *batcher) submit(o *op) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return false
	}
	b.ops <- o
	return true
}

// commit writes ops in one pipeline and sets each op's outcome. A pipeline cannot fall back
// from EVALSHA to EVAL by itself as Script.Run does, so a Redis that lost its script cache (a
// restart) gets a second pass with the scripts' text.
func (l *Ledger) commit(ctx context.Context, ops []*op) {
	for pass := 0; ; pass++ {
		if !l.write(ctx, ops, pass == 0) {
			return
		}
	}
}

// write is one pass of commit; it reports whether a script was missing from Redis's cache
// (only when evalsha is set), in which case nothing was decided and the caller writes again.
func (l *Ledger) write(ctx context.Context, ops []*op, evalsha bool) (noscript bool) {
	var groups []*group
	find := func(o *op) *group {
		for _, g := range groups {
			if g.kind == o.kind && g.scope == o.scope {
				return g
			}
		}
		g := &group{kind: o.kind, scope: o.scope}
		groups = append(groups, g)
		return g
	}
	for _, o := range ops {
		g := find(o)
		g.ops = append(g.ops, o)
	}
	run := func(pipe redis.Pipeliner, s *redis.Script, keys []string, args ...any) *redis.Cmd {
		if evalsha {
			return s.EvalSha(ctx, pipe, keys, args...)
		}
		return s.Eval(ctx, pipe, keys, args...)
	}
	pipe := l.rdb.Pipeline()
	for _, g := range groups {
		g.queue(ctx, l, pipe, run)
	}
	parks := l.queueMaps(ctx, pipe, ops)
	pipe.Exec(ctx)
	for _, g := range groups {
		if g.script != nil && evalsha && redis.HasErrorPrefix(g.script.Err(), "NOSCRIPT") {
			return true
		}
	}
	parks.read(ops)
	for _, g := range groups {
		g.read()
	}
	return false
}

// group is the ops of one kind and lane in one pipeline, and the commands that carry them.
type group struct {
	kind  opKind
	scope string
	ops   []*op
	// Begin: the cancelled flag and each task's result; Sent: one script.
	cancelled *redis.IntCmd
	results   []*redis.StringCmd
	script    *redis.Cmd
}

// queue adds the group's commands to pipe.
func (g *group) queue(ctx context.Context, l *Ledger, pipe redis.Pipeliner, run func(redis.Pipeliner, *redis.Script, []string, ...any) *redis.Cmd) {
	s := g.scope
	switch g.kind {
	case opBegin:
		g.cancelled = pipe.Exists(ctx, cancelledKey(s))
		g.results = make([]*redis.StringCmd, len(g.ops))
		for i, o := range g.ops {
			g.results[i] = pipe.HGet(ctx, TaskKey(s, o.taskID), "result")
		}
	default:
		keys := make([]string, 4, 4+len(g.ops))
		keys[0], keys[1], keys[2], keys[3] = countsKey(s), deadKey(s), deadCodesKey(s), recentKey(s)
		args := make([]any, 2*len(g.ops))
		for i, o := range g.ops {
			keys = append(keys, TaskKey(s, o.taskID))
			args[i], args[len(g.ops)+i] = o.taskID, o.answer
		}
		g.script = run(pipe, laneSentScript, keys, args...)
	}
}

// read sets each op's outcome from the group's replies.
func (g *group) read() {
	fail := func(err error) {
		for _, o := range g.ops {
			o.err = err
		}
	}
	if g.script != nil && g.script.Err() != nil {
		fail(g.script.Err())
		return
	}
	if g.kind != opBegin {
		return
	}
	if err := g.cancelled.Err(); err != nil {
		fail(err)
		return
	}
	if g.cancelled.Val() == 1 {
		fail(ErrCancelled)
		return
	}
	for i, o := range g.ops {
		r := g.results[i]
		if err := r.Err(); err != nil && !errors.Is(err, redis.Nil) {
			o.err = err
			continue
		}
		o.prior, o.alreadySent = r.Val(), r.Err() == nil
	}
}

// mapWrites are the message-id mappings of a pipeline's sent ops and the reads of their parks.
type mapWrites struct {
	idx   []int // the ops mapped, by their place in ops
	sets  []*redis.StatusCmd
	mget  *redis.SliceCmd    // the parks in one read (one Redis node)
	gets  []*redis.StringCmd // or one read each (Redis Cluster: the parks spread over slots)
	parks []string
}

// queueMaps adds to pipe, for each sent op with a message id, the mapping from the id to the job
// and then a read of the id's park. Map first, read after: the receiver parks a callback only
// when it finds no mapping (one script), so a callback either sees the mapping or is parked
// before the read here and comes back with it.
func (l *Ledger) queueMaps(ctx context.Context, pipe redis.Pipeliner, ops []*op) *mapWrites {
	m := &mapWrites{}
	for i, o := range ops {
		if o.kind != opSent || o.msgID == "" {
			continue
		}
		m.idx = append(m.idx, i)
		m.sets = append(m.sets, pipe.Set(ctx, l.mapKey(o.msgID), l.mapValue(o.scope, o.taskID), l.retention))
		m.parks = append(m.parks, l.parkKey(o.msgID))
	}
	switch {
	case len(m.parks) == 0:
	case l.cluster():
		for _, k := range m.parks {
			m.gets = append(m.gets, pipe.Get(ctx, k))
		}
	default:
		m.mget = pipe.MGet(ctx, m.parks...)
	}
	return m
}

// read sets the mapped ops' errors and parked callbacks.
func (m *mapWrites) read(ops []*op) {
	for j, i := range m.idx {
		o := ops[i]
		if err := m.sets[j].Err(); err != nil {
			o.err = err
			continue
		}
		if m.mget != nil {
			if err := m.mget.Err(); err != nil {
				o.err = err
				continue
			}
			o.parked, _ = m.mget.Val()[j].(string)
			continue
		}
		if err := m.gets[j].Err(); err != nil && !errors.Is(err, redis.Nil) {
			o.err = err
			continue
		}
		o.parked = m.gets[j].Val()
	}
}
