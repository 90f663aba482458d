// Package ratelimit shares one per-sender send rate between every worker process on the same
// Redis: at WABULK_RATE=80, two pods send 80 messages/s together, not 160.
//
// # Algorithm
//
// The shared state is one Redis key per sender holding a GCRA theoretical arrival time (TAT)
// in microseconds of the Redis server's clock. A Lua script (gcra.go) reads it, grants slots
// and writes it back atomically, so no two processes can be granted the same slot, and uses
// redis.call('TIME'), so the pods' clocks never enter the schedule. Slot j of the sequence is
// conformant from TAT + (j+1)·T − τ (T = 1/Rate, τ = Burst·T, less T/2 when Burst ≥ 2 so
// the last token of a burst comes half a slot after the others): the sequence of slot times is
// what a single GCRA limiter with that rate and burst would allow, whichever process gets each
// slot, with one token of the window bound kept as margin for wake-up jitter.
//
// A process does not ask for one token per message. Per sender it keeps a FIFO of waiting
// callers, and one fetch goroutine (alive only while callers wait) asks the script for as many
// slots as callers are waiting, up to a batch, reserving slots whose time falls within a short
// horizon (200 ms, longer at low rates so a batch holds ~32 slots, at most 1 s). Each slot
// goes straight to one waiting caller, which sleeps until the slot's time and returns then.
// When the horizon is full (other pods hold it) the script says how long until half a batch has
// opened, and the fetcher sleeps that long: waiters never poll Redis, and pods that lose a race
// for fresh slots come back once per half batch, not once per slot. A local
// golang.org/x/time/rate limiter caps each sender's script calls per process at the rate
// itself: a pod never asks Redis more often than the whole fleet may send, so it costs at most
// about one call per message however callers arrive, and callers that arrive faster than that
// are batched into the next call instead.
//
// When the rate does not bind, callers rarely wait together, so asking for one slot per waiter
// would cost a call per message. Each call therefore also asks for extra slots for the pool, as
// many as callers arrived in the last grace G and are not waiting now (what the next G will
// likely bring, at most a batch). The script grants them only if they are conformant now even
// when charged from now + G onward, which is never the case while the rate binds: then the call
// is exactly the one described above. A pooled extra is used from the moment the answer arrives
// until G after the call was sent, then dropped.
//
// # Why the bound holds
//
// Every send happens at or after its slot's time, because the slot is converted to the local
// clock from the moment the script's answer arrived, which is after the server read TIME. And
// no send lags its slot by more than a grace G (two slots or half the burst's room, whichever
// is longer, at least 5 ms, at most 100 ms): a waiter owns its slot before the slot's time
// comes and returns when it does; a slot given back by a cancelled caller goes to the next
// waiting caller or a short pool; a slot nobody took in time, or whose waiter woke later than G
// (a stalled process: GC pause, starved CPU), is dropped and the caller takes a fresh one, so
// a stall can never release a backlog of slots in one burst. The sends are therefore the GCRA
// schedule, each shifted by at most G. Over time that is at most Rate per second. In a 1 s
// window it is at most Rate + Burst − 1 while wake-ups are prompt (the tests measure exactly
// that). Each slot has a charge c, the TAT it advanced Redis's sequence from, and charges are
// at least T apart; a slot is sent at a time u with c + T − τ ≤ u ≤ c, so the sends of any
// window shorter than 1 s have distinct charges within less than 1 s + τ − T. A slot handed to
// a waiting caller is sent at max(now, c + T − τ), which is at most c because c ≥ now. A pooled
// extra may be sent up to G after Redis read its clock, which is why the script charges it from
// now + G: charged from now, the burst room Redis regains during G could be spent a second
// time, and a wave after a flow below the rate would go past Rate + Burst
// (TestWaveAfterAFlowKeepsTheWindowBound catches that). The price is that while extras are
// granted, up to G of the burst room is held by them, so a sudden wave gets that much less at
// once; the sustained rate is unchanged. Late wake-ups can shift up to Rate·G more slots into
// a window, which stays within Rate + Burst in steady state, and can exceed it by at most
// about Burst/2 only if a stall lands right after an idle burst. Slots a process reserved and could not use (callers
// cancelled, the process died, stale wake-ups) are lost, at most one horizon's worth, which
// lowers the achieved rate but never raises it; when demand exceeds the rate the pods keep the
// horizon full and the achieved rate is the configured one. The fetcher also waits until
// shortly before the next slot it could get (4 slots, at least 10 ms) before asking, so
// callers that return in the meantime join one call instead of making one each.
//
// # Cost
//
// One script call (EVALSHA) per fetch. Saturated, a process makes about one call per half
// batch it takes, plus one lost call per round for each other contending pod; below the rate,
// about one call per grace's worth of arrivals (at most a batch), since the pool serves the
// rest. BenchmarkWait reports the ratio measured (round trips per token). A lone caller that
// comes less often than once a grace costs one call per message, which is only a cost when
// the rate is far from reached. Extras nobody came for in time are counted in Stats.Unused;
// they are lost only to the spare rate, since they are granted only when it is not binding.
//
// # Failure
//
// If Redis cannot be reached the fetcher retries with a backoff from 10 ms to 500 ms for as long
// as callers wait; nobody is let through without a slot Redis granted (fails closed). Slots
// already granted before the outage stay valid. A Redis that restarts without persistence has
// forgotten the TAT, so the fleet may get one fresh Burst early: the bound holds per Redis
// lifetime.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

const (
	minHorizon  = 200 * time.Millisecond
	maxHorizon  = time.Second
	batchSlots  = 32  // slots a horizon should hold at low rates, so batches stay useful
	maxBatch    = 256 // slots one call may take
	minGrace    = 5 * time.Millisecond
	maxGrace    = 100 * time.Millisecond
	minBackoff  = 10 * time.Millisecond
	maxBackoff  = 500 * time.Millisecond
	callsPerHzn = 4 // the call cap never goes below this many per horizon, for very low rates
	minLead     = 10 * time.Millisecond
	maxRate     = 1e6
)

// Config sets the shared limit. Fields are read once by New.
type Config struct {
	// Rate is messages per second per sender, for all processes together. Required, > 0.
	Rate float64
	// Burst is how many tokens may be handed out at once. Default ceil(Rate/10), at least 1.
	Burst int
	// Prefix namespaces the Redis keys. Default "wabulk".
	Prefix string
}

func (c Config) withDefaults() Config {
	if c.Burst == 0 && c.Rate > 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate/10)))
	}
	if c.Prefix == "" {
		c.Prefix = "wabulk"
	}
	return c
}

// validate names the environment variables the worker reads these from, so a bad deployment
// says what to fix.
func (c Config) validate() error {
	var errs []error
	if math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > maxRate {
		errs = append(errs, fmt.Errorf("WABULK_RATE must be > 0 and at most %g messages per second, got %v", float64(maxRate), c.Rate))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("WABULK_BURST must be >= 1 (0 means ceil(rate/10)), got %d", c.Burst))
	}
	return errors.Join(errs...)
}

// Stats counts what a Limiter has done since New.
type Stats struct {
	// RoundTrips is script calls sent to Redis, failed ones included.
	RoundTrips uint64
	// Tokens is Waits that returned nil: messages allowed.
	Tokens uint64
	// Reserved is slots Redis granted to this process.
	Reserved uint64
	// Unused is reserved slots dropped because no caller could take them in time.
	Unused uint64
	// Errors is round trips that failed (Redis unreachable, timeouts).
	Errors uint64
}

// Limiter is the per-sender rate limit, safe for any number of goroutines. One Limiter per
// process is enough; any number of Limiters on the same Redis and Prefix share the rate.
type Limiter struct {
	rdb        redis.UniversalClient
	prefix     string
	intervalUS float64 // T, µs between slots
	tauUS      float64 // Burst·T
	horizon    time.Duration
	maxBatch   int
	minBatch   int
	grace      time.Duration
	lead       time.Duration // how long before the next slot a fetch is made
	callLimit  rate.Limit
	callBurst  int

	mu      sync.Mutex
	buckets map[string]*bucket

	trips, tokens, reserved, unused, errs atomic.Uint64
}

// New checks cfg and returns a Limiter on rdb. It does not contact Redis: a Redis that is down
// at start makes Wait wait, like one that goes down later.
func New(rdb redis.UniversalClient, cfg Config) (*Limiter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	interval := 1e6 / cfg.Rate
	horizon := time.Duration(batchSlots * interval * float64(time.Microsecond))
	horizon = min(max(horizon, minHorizon), maxHorizon)
	batch := min(max(int(cfg.Rate*horizon.Seconds()), 1), maxBatch)
	return &Limiter{
		rdb:        rdb,
		prefix:     cfg.Prefix,
		intervalUS: interval,
		tauUS:      tolerance(cfg.Burst) * interval,
		horizon:    horizon,
		maxBatch:   batch,
		minBatch:   max(1, batch/2),
		grace:      grace(interval, cfg.Burst),
		lead:       min(max(4*time.Duration(interval*float64(time.Microsecond)), minLead), horizon/2),
		callLimit:  rate.Limit(max(cfg.Rate, callsPerHzn/horizon.Seconds())),
		callBurst:  cfg.Burst + 1,
		buckets:    make(map[string]*bucket),
	}, nil
}

// tolerance is the GCRA burst tolerance in slots. Exact GCRA allows Burst at once and then
// Rate per second, which fills a closed 1 s window with exactly Rate + Burst: any wake-up
// jitter could push a measured window over. Holding the last token of a burst back by half a
// slot keeps one token of the bound as margin; a burst of 1 is not held back, or the first
// send after idle would wait.
func tolerance(burst int) float64 {
	if burst < 2 {
		return float64(burst)
	}
	return float64(burst) - 0.5
}

// grace is how late a slot may still be used: two slots, or half the burst's room so that a
// stall's late sends stay within the Rate + Burst window; at least 5 ms (ordinary wake-up
// jitter), at most 100 ms.
func grace(intervalUS float64, burst int) time.Duration {
	one := time.Duration(intervalUS * float64(time.Microsecond))
	g := max(2*one, one*time.Duration(burst-1)/2)
	// Whole µs: the script charges pooled slots at now + grace in µs, and the pool must drop
	// them no later than that.
	return min(max(g, minGrace), maxGrace).Truncate(time.Microsecond)
}

// Wait blocks until the caller may send one message from sender, or ctx ends (then it returns ctx's error).
// It returns how long it waited.
func (l *Limiter) Wait(ctx context.Context, sender string) (time.Duration, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b := l.bucket(sender)
	for {
		s, err := b.acquire(ctx)
		if err != nil {
			return time.Since(start), err
		}
		if d := time.Until(s.at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				b.giveBack(s)
				return time.Since(start), ctx.Err()
			}
		}
		if !time.Now().After(s.until) {
			l.tokens.Add(1)
			return time.Since(start), nil
		}
		// We woke too late (a stalled process: GC, CPU starvation). Sending on this slot
		// now would pile it onto the slots after it; drop it and take a fresh one.
		l.unused.Add(1)
	}
}

// Stats returns the counters so far: RoundTrips/Tokens is Redis calls per message.
func (l *Limiter) Stats() Stats {
	return Stats{
		RoundTrips: l.trips.Load(),
		Tokens:     l.tokens.Load(),
		Reserved:   l.reserved.Load(),
		Unused:     l.unused.Load(),
		Errors:     l.errs.Load(),
	}
}

func (l *Limiter) bucket(sender string) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[sender]
	if b == nil {
		b = &bucket{
			l:       l,
			key:     l.key(sender),
			calls:   rate.NewLimiter(l.callLimit, l.callBurst),
			arrived: make([]time.Time, 0, l.maxBatch),
		}
		l.buckets[sender] = b
	}
	return b
}

// bucket is one sender's local side: callers waiting for a slot, slots nobody waits for yet,
// and the single fetcher that asks Redis on their behalf.
type bucket struct {
	l     *Limiter
	key   string
	calls *rate.Limiter // paces this process's script calls for the sender

	mu       sync.Mutex
	queue    []*waiter // FIFO; non-empty only while pool holds no usable slot
	pool     []slot    // sorted by time; slots nobody owns yet
	fetching bool
	next     time.Time          // the slot after the last one this process got: none earlier exists
	cancel   context.CancelFunc // stops the fetcher's current call or sleep when the queue empties
	arrived  []time.Time        // ring of the latest calls to acquire, at most a batch
	arrivedI int                // the oldest entry once the ring is full
}

// slot is one granted send: not before at, and not after until (at + grace, or for a pooled
// extra the grace after the call that got it, which is when Redis charged it).
type slot struct{ at, until time.Time }

type waiter struct{ slot chan slot } // buffered 1: delivery never blocks under b.mu

// acquire returns a slot the caller owns: from the pool, or handed over by the fetcher.
func (b *bucket) acquire(ctx context.Context) (slot, error) {
	b.mu.Lock()
	now := time.Now()
	b.arrive(now)
	if s, ok := b.fromPool(now); ok {
		b.mu.Unlock()
		return s, nil
	}
	w := &waiter{slot: make(chan slot, 1)}
	b.queue = append(b.queue, w)
	if !b.fetching {
		b.fetching = true
		go b.fetch()
	}
	b.mu.Unlock()

	select {
	case s := <-w.slot:
		return s, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	if i := slices.Index(b.queue, w); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		if len(b.queue) == 0 && b.cancel != nil {
			b.cancel()
		}
		b.mu.Unlock()
		return slot{}, ctx.Err()
	}
	b.mu.Unlock()
	// The fetcher handed us a slot as ctx ended; pass it on rather than lose it.
	b.giveBack(<-w.slot)
	return slot{}, ctx.Err()
}

// arrive records a call to acquire in the ring. Called with b.mu held.
func (b *bucket) arrive(now time.Time) {
	if len(b.arrived) < cap(b.arrived) {
		b.arrived = append(b.arrived, now)
		return
	}
	b.arrived[b.arrivedI] = now
	b.arrivedI = (b.arrivedI + 1) % len(b.arrived)
}

// recent is how many calls to acquire were made since t, at most a batch. Called with b.mu held.
func (b *bucket) recent(t time.Time) int {
	n := 0
	for _, a := range b.arrived {
		if !a.Before(t) {
			n++
		}
	}
	return n
}

// fromPool pops the earliest slot still fresh enough to use; stale ones are dropped, never
// used late, so a send never lags its slot by more than the grace. Called with b.mu held.
func (b *bucket) fromPool(now time.Time) (slot, bool) {
	for len(b.pool) > 0 {
		s := b.pool[0]
		b.pool = b.pool[1:]
		if !now.After(s.until) {
			return s, true
		}
		b.l.unused.Add(1)
	}
	return slot{}, false
}

// place gives slot s to the longest waiting caller, or keeps it in the pool. Called with b.mu held.
func (b *bucket) place(s slot) {
	if len(b.queue) > 0 {
		w := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		w.slot <- s
		return
	}
	i, _ := slices.BinarySearchFunc(b.pool, s, func(p, s slot) int { return p.at.Compare(s.at) })
	b.pool = slices.Insert(b.pool, i, s)
}

// giveBack returns the slot of a caller whose ctx ended before it was used.
func (b *bucket) giveBack(s slot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Now().After(s.until) {
		b.l.unused.Add(1)
		return
	}
	b.place(s)
}

// fetch asks Redis for slots while callers wait, then exits: no goroutine outlives the
// waiting. Each round's context is cancelled when the last waiter leaves, so a cancelled
// caller is not kept behind a sleep or a slow Redis.
func (b *bucket) fetch() {
	l := b.l
	backoff := minBackoff
	for {
		b.mu.Lock()
		need := len(b.queue)
		if need == 0 {
			b.fetching, b.cancel = false, nil
			b.mu.Unlock()
			return
		}
		// Callers that came in the last grace and are not waiting now: about how many more
		// will come while pooled slots stay usable.
		extra := b.recent(time.Now().Add(-l.grace)) - need
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel = cancel
		early := time.Until(b.next.Add(-l.lead)) // not Until(next)-lead: a zero next would overflow
		b.mu.Unlock()

		var pause time.Duration
		if early > 0 {
			// No slot for a new caller exists before b.next, so asking now would only take
			// a small batch: wait until shortly before it, while more callers queue up.
			pause = early
		} else if b.calls.Wait(ctx) == nil {
			n := min(need, l.maxBatch)
			sent := time.Now()
			g, trips, err := l.reserve(ctx, b.key, n, min(n, l.minBatch), min(max(extra, 0), l.maxBatch-n))
			l.trips.Add(uint64(trips))
			switch {
			case err == nil:
				backoff = minBackoff
				b.deliver(g, sent)
				if g.n < n {
					pause = g.retry
				}
			case ctx.Err() == nil: // Redis failed, not our cancellation: fail closed, retry.
				l.errs.Add(1)
				pause = backoff
				backoff = min(2*backoff, maxBackoff)
			}
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		cancel()
	}
}

// deliver hands the granted slots out in order. The local time of a slot is measured from
// when the answer arrived, which is after Redis read its clock: slots are never early. Extra
// slots are conformant now and usable until a grace after sent, when the call left: Redis
// charged them as if used a grace after it read its clock, which was later.
func (b *bucket) deliver(g grant, sent time.Time) {
	if g.n+g.extra == 0 {
		return
	}
	anchor := time.Now()
	l := b.l
	l.reserved.Add(uint64(g.n + g.extra))
	b.mu.Lock()
	defer b.mu.Unlock()
	for j := range g.n {
		at := anchor.Add(l.slotOffset(g, j))
		b.place(slot{at: at, until: at.Add(l.grace)})
	}
	for range g.extra {
		b.place(slot{at: anchor, until: sent.Add(l.grace)})
	}
	b.next = anchor.Add(l.conformAt(float64(g.after.Microseconds()) + l.intervalUS))
}
