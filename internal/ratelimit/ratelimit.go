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
// # Per-sender settings
//
// Config.Rate and Config.Burst are every sender's default. Config.Rates, when set, gives
// senders their own (the worker reads `wabulk sender rate` overrides from one Redis hash, in
// one round trip for all senders). Every parameter above is derived from a (rate, burst) pair,
// so each bucket holds a pointer to its sender's: T, τ, horizon, batch, grace, lead and call
// pace. While any caller waits, a refresh loop starts a read of the settings every 250 ms (it
// stops when the last fetcher does; an idle Limiter has no goroutine). Neither a fetcher asking
// Redis for slots nor a caller using a slot proceeds under settings whose last read started
// staleAfter = 0.5 s ago or more: it reads them first, which the refresher makes rare (only
// after the process was idle, or held slots without fetching). A bucket whose setting changed
// gets the new pointer: what it derived from the old setting is dropped, and its fetcher,
// which may be pausing on the old schedule (20 s at 0.05/s), is woken. Slots granted under a
// setting faster than the new one (a higher rate or a larger burst) are void: pooled ones are
// dropped at once, the ones callers hold when they come to use them, and those a call still in
// flight brings back on arrival (all counted in Stats.Unused). Other slots are kept (Redis
// charged them). A value out of range (CheckOverride) is ignored and the sender keeps the
// default; a failed read counts as a read and keeps the last settings (fail static).
//
// # The bound across a change
//
// Beside each sender's TAT, Redis keeps the setting "T τ" it was last advanced under. A call
// under another setting first joins the old schedule to its own (gcra.go): the new TAT is the
// larger of tat − T₀ + T (the next charge comes T after the last one: charges keep
// increasing) and tat + (T₀ − τ₀) − (T − τ) (the next slot conforms no earlier than the old
// schedule's next: the change adds no burst), but at most now + settle − T + τ (the next slot
// conforms within settle = 1.2 s).
//
// A lowered rate (or burst) binds within staleAfter = 0.5 s of being written: a slot used at u
// passed the read check, so a read that started after u − 0.5 s had reached its bucket; when u
// is 0.5 s or more after the write, that read saw the change, and the slot is used only if it
// was granted under a setting no faster than the new one. From then on every 1 s window holds
// slots of the new setting or of slower ones only, and the cases below bound it by the larger
// of those, the new one. A raised rate is in force within about 1.5 s: 250 ms and a read until
// every process has read it, then at most until the old schedule's next slot, itself at most
// settle away. Void slots are never sent, so dropping them can only lower a window's count;
// it costs what Redis charged for them: after a lowering the sender may send nothing for up to
// a horizon (≤ 1 s, which bounds the slots a process holds) while the schedule passes them.
// Why no 1 s window holds more than Rate + Burst − 1 of the larger of the two settings:
//
//   - Rate raised. Charges keep increasing across the join, each slot is still sent at some u
//     with c + T_k − τ_k ≤ u ≤ c for the setting k that granted it, and charges are at least
//     the new (smaller) T apart. A window holding a new slot has its latest charge on a new
//     slot, so its charges lie within 1 s + τ − T: the new bound, exactly as without a change.
//     A window of old slots only has the old bound, the lower one.
//   - Rate lowered. Conformance times keep increasing across the join (second term), old ones
//     T₀ apart up to it, new ones T apart after it. A window with the join a seconds after its
//     start holds at most a·Rate₀ + (1−a)·Rate + Burst₀ − 1/2 slots: within the old bound. A
//     window after the last old send holds new slots only, whose charges are at least T apart
//     even where stale processes alternated (each join charges the caller's next slot at least
//     its own T after the last charge): the new bound.
//   - The cap applied (the old schedule's next slot was more than settle away: a large burst
//     room at a low rate, or a rate from below ~1/s raised). Every slot granted before the
//     call is sent or dropped by settle after it (a horizon ahead at most, a grace late at
//     most, 100 ms for the answer's trip), and the new schedule's first slot conforms exactly
//     then, without a burst. A window holds the tail of one schedule and the head of the other,
//     each at its own spacing, 100 ms apart at least: at most the larger rate plus one slot at
//     the join, which can exceed the larger bound by one only at rates below 10/s (burst 1).
//
// Processes that have not read a change yet (at most 250 ms and a read) alternate the setting
// at each call; each alternation is a join as above, so their windows hold at most the larger
// bound, and each costs a little capacity (a join never brings a slot forward). The same holds
// when processes disagree for longer: different WABULK_RATE, or queues (WABULK_QUEUE) with
// different overrides for one number, which share its key: they share its budget too. The TAT
// and setting keys live ten minutes after the TAT has passed; a new setting whose burst room is
// longer than that may get its full burst at once when it replaces an older one.
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
// The per-sender settings cost one read of the source (one round trip for all senders) every
// 250 ms per process while callers wait, and about one per 0.5 s at most otherwise, however
// many senders and messages.
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
	// Rate is messages per second per sender, for all processes together: the default of
	// every sender without an override. Required, > 0.
	Rate float64
	// Burst is how many tokens may be handed out at once. Default ceil(Rate/10), at least 1.
	Burst int
	// Prefix namespaces the Redis keys. Default "wabulk".
	Prefix string
	// Rates, when set, is where per-sender overrides of Rate and Burst come from; the Limiter
	// reads it every 250 ms while callers wait and follows a change without a restart (a
	// lowered rate binds within 0.5 s). Nil: every sender has Rate and Burst.
	Rates RateSource
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
	if math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > maxRate { // > maxRate also catches +Inf
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
	// Unused is reserved slots dropped: no caller could take them in time, or the sender's
	// rate (or burst) was lowered before they were used.
	Unused uint64
	// Errors is round trips that failed (Redis unreachable, timeouts).
	Errors uint64
	// RateErrors is reads of the per-sender settings that failed (the last ones were kept).
	RateErrors uint64
	// BadRates is per-sender settings ignored because they were out of range (the sender
	// had the default instead), counted at each read.
	BadRates uint64
}

// Limiter is the per-sender rate limit, safe for any number of goroutines. One Limiter per
// process is enough; any number of Limiters on the same Redis and Prefix share the rate.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	params // the default setting (Config.Rate, Config.Burst)
	set    settings

	mu      sync.Mutex
	buckets map[string]*bucket

	trips, tokens, reserved, unused, errs, rateErrs, badRates atomic.Uint64
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
	l := &Limiter{
		rdb:     rdb,
		prefix:  cfg.Prefix,
		params:  *derive(cfg.Rate, cfg.Burst),
		buckets: make(map[string]*bucket),
	}
	l.set = settings{src: cfg.Rates, def: Override{Rate: cfg.Rate, Burst: cfg.Burst}, idle: make(chan struct{}, 1), epoch: time.Now()}
	l.set.readAt.Store(neverRead)
	return l, nil
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
	g := max(2*intervalUS, intervalUS*float64(burst-1)/2) / 1e6
	// Whole µs: the script charges pooled slots at now + grace in µs, and the pool must drop
	// them no later than that.
	return clampDur(g, minGrace, maxGrace).Truncate(time.Microsecond)
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
		// Used only under settings read less than staleAfter ago, and only if the sender's
		// setting now is not slower than the one Redis granted it under: a lowered rate
		// binds within staleAfter of being written.
		if err := l.awaitRead(ctx, s.until); err != nil {
			b.giveBack(s)
			return time.Since(start), err
		}
		if l.set.src != nil && b.void(s) { // without a source the setting never changes
			l.unused.Add(1)
			continue
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
		RateErrors: l.rateErrs.Load(),
		BadRates:   l.badRates.Load(),
	}
}

func (l *Limiter) bucket(sender string) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[sender]
	if b == nil {
		p := l.paramsFor(sender)
		b = &bucket{
			l:       l,
			key:     l.key(sender),
			calls:   rate.NewLimiter(p.callLimit, p.callBurst),
			p:       p,
			wake:    make(chan struct{}, 1),
			arrived: make([]time.Time, 0, p.maxBatch),
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
	p        *params       // the sender's setting now; replaced, never changed, on a change
	wake     chan struct{} // buffered 1: the setting changed, the fetcher's pause is over
	queue    []*waiter     // FIFO; non-empty only while pool holds no usable slot
	pool     []slot        // sorted by time; slots nobody owns yet
	fetching bool
	next     time.Time          // the slot after the last one this process got: none earlier exists
	cancel   context.CancelFunc // stops the fetcher's current call or sleep when the queue empties
	arrived  []time.Time        // ring of the latest calls to acquire, at most a batch
	arrivedI int                // the oldest entry once the ring is full
}

// slot is one granted send: not before at, and not after until (at + grace, or for a pooled
// extra the grace after the call that got it, which is when Redis charged it); p is the
// setting the script call that granted it used.
type slot struct {
	at, until time.Time
	p         *params
}

// faster reports whether setting q allows more than p: a higher rate or a larger burst. A slot
// granted under a setting faster than the sender's now is void (see bucket.void).
func faster(q, p *params) bool { return q.rate > p.rate || q.burst > p.burst }

// void reports whether s was granted under a setting faster than the sender's now: the rate
// (or burst) was lowered after Redis granted it, and using it would send at the old pace.
func (b *bucket) void(s slot) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return faster(s.p, b.p)
}

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
	if time.Now().After(s.until) || faster(s.p, b.p) {
		b.l.unused.Add(1)
		return
	}
	b.place(s)
}

// setParams gives the bucket a new setting. Slots granted under a faster setting (the rate
// or burst was lowered) are void: the pooled ones are dropped now, the ones callers hold when
// they come to use them (Wait), and so are those a script call still in flight brings back.
// Other slots stay (Redis charged them, and the script joins the two schedules, see gcra.go).
// What was derived from the old setting is dropped: the estimate of the next slot, the
// arrivals (sized by the old batch), the call pace. A fetcher pausing on the old setting's
// schedule is woken so that it asks again under the new one.
func (b *bucket) setParams(p *params) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == p {
		return
	}
	b.p = p
	kept := b.pool[:0]
	for _, s := range b.pool {
		if faster(s.p, p) {
			b.l.unused.Add(1)
			continue
		}
		kept = append(kept, s)
	}
	clear(b.pool[len(kept):])
	b.pool = kept
	b.next = time.Time{}
	b.arrived, b.arrivedI = make([]time.Time, 0, p.maxBatch), 0
	b.calls.SetLimit(p.callLimit)
	b.calls.SetBurst(p.callBurst)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// fetch asks Redis for slots while callers wait, then exits: no goroutine outlives the
// waiting. Each round's context is cancelled when the last waiter leaves, so a cancelled
// caller is not kept behind a sleep or a slow Redis.
func (b *bucket) fetch() {
	l := b.l
	l.fetchStarted()
	defer l.fetchStopped()
	backoff := minBackoff
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.fetching, b.cancel = false, nil
			b.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel = cancel
		b.mu.Unlock()

		l.awaitFresh(ctx) // only after an idle spell: the refresh loop keeps them fresh

		b.mu.Lock()
		need := len(b.queue)
		p := b.p // this round's setting: the script call and the slots it grants use it
		// Callers that came in the last grace and are not waiting now: about how many more
		// will come while pooled slots stay usable.
		extra := b.recent(time.Now().Add(-p.grace)) - need
		early := time.Until(b.next.Add(-p.lead)) // not Until(next)-lead: a zero next would overflow
		b.mu.Unlock()

		var pause time.Duration
		switch {
		case need == 0:
		case early > 0:
			// No slot for a new caller exists before b.next, so asking now would only take
			// a small batch: wait until shortly before it, while more callers queue up.
			pause = early
		case b.calls.Wait(ctx) == nil:
			n := min(need, p.maxBatch)
			sent := time.Now()
			g, trips, err := l.reserve(ctx, p, b.key, n, min(n, p.minBatch), min(max(extra, 0), p.maxBatch-n))
			l.trips.Add(uint64(trips))
			switch {
			case err == nil:
				backoff = minBackoff
				b.deliver(g, sent, p)
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
			case <-b.wake: // a new setting: its schedule may differ, ask again now
			}
			t.Stop()
		}
		cancel()
	}
}

// deliver hands the granted slots out in order, timed by p, the setting the script call used.
// The local time of a slot is measured from when the answer arrived, which is after Redis read
// its clock: slots are never early. Extra slots are conformant now and usable until a grace
// after sent, when the call left: Redis charged them as if used a grace after it read its
// clock, which was later.
func (b *bucket) deliver(g grant, sent time.Time, p *params) {
	if g.n+g.extra == 0 {
		return
	}
	anchor := time.Now()
	l := b.l
	l.reserved.Add(uint64(g.n + g.extra))
	b.mu.Lock()
	defer b.mu.Unlock()
	for j := range g.n {
		at := anchor.Add(p.slotOffset(g, j))
		b.place(slot{at: at, until: at.Add(p.grace), p: p})
	}
	for range g.extra {
		b.place(slot{at: anchor, until: sent.Add(p.grace), p: p})
	}
	if b.p == p { // after a change the old schedule says nothing about the next slot
		b.next = anchor.Add(p.conformAt(float64(g.after.Microseconds()) + p.intervalUS))
	}
}
