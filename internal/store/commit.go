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
// with one script call per campaign and kind. Under load, N jobs in flight cost one round trip
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
	answer []byte                  // opSent: the sent marker's value
	msgID  string                  // opSent: Kaleyra's message id, mapped to the job for status callbacks
	with   []func(redis.Pipeliner) // opSent: commands that ride in the same pipeline
	// Set by commit.
	prior       string
	alreadySent bool
	parked      string // opSent: a status callback that arrived before the message id was mapped
	err         error
	done        chan struct{} // closed when set, in Batch mode
}

// KEYS: active retry sent cancelled. ARGV: taskIDs. For each task returns 0, or the sent
// marker's value when it was sent already; -1 when the lane is cancelled (no task of it may be
// sent).
var beginScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local out = {}
for i, id in ipairs(ARGV) do
  local sent = redis.call('HGET', KEYS[3], id)
  redis.call('SREM', KEYS[2], id)
  if sent then
    redis.call('SREM', KEYS[1], id)
    out[i] = sent
  else
    redis.call('SADD', KEYS[1], id)
    out[i] = 0
  end
end
return out
`)

// ErrCancelled is Begin's answer for a job of a cancelled campaign: it must not be sent.
var ErrCancelled = errors.New("the campaign is cancelled")

// Begin marks the job active. When the job was already sent (a crash between Kaleyra's answer
// and asynq's ack made it run again) it returns the stored answer and true: do not send again.
// A job of a cancelled campaign is ErrCancelled.
func (l *Ledger) Begin(ctx context.Context, scope, taskID string) (prior string, alreadySent bool, err error) {
	o := &op{kind: opBegin, scope: scope, taskID: taskID}
	l.do(ctx, o)
	if errors.Is(o.err, ErrCancelled) {
		return "", false, ErrCancelled
	}
	if o.err != nil {
		return "", false, fmt.Errorf("ledger: begin: %w", o.err)
	}
	return o.prior, o.alreadySent, nil
}

// KEYS: counts active sent dead deadcodes. ARGV: ttl seconds, then taskID, answer for each
// task. The retry set is not touched: the attempt's Begin took the job out of it, and only a
// failed attempt (Retry, not followed by Sent) puts it back. A job that has a dead-letter
// record and is then sent was dead-lettered by an attempt whose archive never reached asynq
// (Redis went away first, so asynq ran the job again), or redriven before its record was
// removed: it counts as sent, and the stale record goes.
var sentScript = redis.NewScript(`
local n, undead = 0, 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('SREM', KEYS[2], id)
  if redis.call('HSETNX', KEYS[3], id, ARGV[i+1]) == 1 then
    n = n + 1
    local old = redis.call('HGET', KEYS[4], id)
    if old then
      redis.call('HDEL', KEYS[4], id)
      redis.call('HINCRBY', KEYS[5], cjson.decode(old)['code'], -1)
      undead = undead + 1
    end
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'completed', n)
end
if undead > 0 then
  redis.call('HINCRBY', KEYS[1], 'dead', -undead)
end
redis.call('EXPIRE', KEYS[3], ARGV[1])
return n
`)

// Sent records that Kaleyra accepted the job; answer is kept as the sent marker for the
// retention window. Commands that with queues go in the same round trip (the worker writes the
// task result there): every accepted message passes this way.
func (l *Ledger) Sent(ctx context.Context, scope, taskID string, answer []byte, with ...func(redis.Pipeliner)) error {
	return l.SentMessage(ctx, scope, taskID, "", answer, with...)
}

// SentMessage is Sent that also maps Kaleyra's message id msgID (empty: none) to the job in the
// same round trip, so the status callbacks find it, and applies a callback that came first.
func (l *Ledger) SentMessage(ctx context.Context, scope, taskID, msgID string, answer []byte, with ...func(redis.Pipeliner)) error {
	if !ValidMessageID(msgID) {
		msgID = ""
	}
	o := &op{kind: opSent, scope: scope, taskID: taskID, msgID: msgID, answer: answer, with: with}
	l.do(ctx, o)
	if o.err != nil {
		return fmt.Errorf("ledger: sent: %w", o.err)
	}
	if o.parked != "" {
		// Rare: the callback beat the worker's record. Its own round trips, after the marker.
		if err := l.applyParked(ctx, scope, taskID, msgID, o.parked); err != nil {
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
		for group := range batch.Of(b.ops, max) {
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
	type group struct {
		kind  opKind
		scope string
		ops   []*op
		cmd   *redis.Cmd
	}
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
	pipe := l.rdb.Pipeline()
	for _, g := range groups {
		script, keys := beginScript, []string{key(g.scope, "active"), key(g.scope, "retry"), key(g.scope, "sent"),
			key(g.scope, "cancelled")}
		args := make([]any, 0, 1+2*len(g.ops))
		if g.kind == opSent {
			script, keys = sentScript, []string{key(g.scope, "counts"), keys[0], keys[2], key(g.scope, "dead"),
				key(g.scope, "deadcodes")}
			args = append(args, int64(l.retention/time.Second))
		}
		for _, o := range g.ops {
			args = append(args, o.taskID)
			if g.kind == opSent {
				args = append(args, o.answer)
			}
		}
		if evalsha {
			g.cmd = script.EvalSha(ctx, pipe, keys, args...)
		} else {
			g.cmd = script.Eval(ctx, pipe, keys, args...)
		}
	}
	// Each sent message's id mapping, in its own slot (the message id's).
	maps := make([]*redis.Cmd, len(ops))
	ttl := int64(l.retention / time.Second)
	for i, o := range ops {
		if o.kind != opSent || o.msgID == "" {
			continue
		}
		mk := []string{l.mapKey(o.msgID), l.parkKey(o.msgID)}
		if evalsha {
			maps[i] = mapScript.EvalSha(ctx, pipe, mk, l.mapValue(o.scope, o.taskID), ttl)
		} else {
			maps[i] = mapScript.Eval(ctx, pipe, mk, l.mapValue(o.scope, o.taskID), ttl)
		}
	}
	// Each op's own extra commands, by their place in the pipeline.
	spans := make([][2]int, len(ops))
	for i, o := range ops {
		spans[i][0] = pipe.Len()
		for _, f := range o.with {
			f(pipe)
		}
		spans[i][1] = pipe.Len()
	}
	cmds, _ := pipe.Exec(ctx)
	for _, g := range groups {
		if evalsha && redis.HasErrorPrefix(g.cmd.Err(), "NOSCRIPT") {
			return true
		}
	}
	for _, m := range maps {
		if m != nil && evalsha && redis.HasErrorPrefix(m.Err(), "NOSCRIPT") {
			return true
		}
	}
	for i, m := range maps {
		if m == nil {
			continue
		}
		if err := m.Err(); err != nil && !errors.Is(err, redis.Nil) {
			ops[i].err = err
			continue
		}
		ops[i].parked, _ = m.Val().(string)
	}
	for _, g := range groups {
		if err := g.cmd.Err(); err != nil {
			for _, o := range g.ops {
				o.err = err
			}
			continue
		}
		if g.kind != opBegin {
			continue
		}
		if n, ok := g.cmd.Val().(int64); ok && n == -1 {
			for _, o := range g.ops {
				o.err = ErrCancelled
			}
			continue
		}
		vals, _ := g.cmd.Val().([]any)
		if len(vals) != len(g.ops) {
			for _, o := range g.ops {
				o.err = fmt.Errorf("begin script answered %d values for %d tasks", len(vals), len(g.ops))
			}
			continue
		}
		for i, o := range g.ops {
			o.prior, o.alreadySent = vals[i].(string)
		}
	}
	for i, o := range ops {
		if o.err != nil || spans[i][0] == spans[i][1] || len(cmds) < spans[i][1] {
			continue
		}
		for _, c := range cmds[spans[i][0]:spans[i][1]] {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				o.err = err
				break
			}
		}
	}
	return false
}
