package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const (
	// MaxRate is the highest rate, default or per sender, in messages per second.
	MaxRate = maxRate
	// MaxBurst is the highest burst a per-sender setting may have.
	MaxBurst = 1_000_000

	// refreshEvery is how often a process with callers waiting reads the per-sender settings:
	// one call for all senders, so its cost is per process, not per sender or per message.
	refreshEvery = 250 * time.Millisecond
	// staleAfter is the age of the settings (since the last read started) beyond which no slot
	// is used and no fetch asks Redis for slots before a fresh read: a lowered rate binds
	// within staleAfter of being written (see the package comment). The refresher's reads keep
	// the settings younger than that while callers wait, so this only costs a read when a
	// process was idle, or only held slots, for a while.
	staleAfter = 2 * refreshEvery
	// refreshTimeout bounds one read of the settings; a failed read keeps the last ones.
	refreshTimeout = staleAfter
	// settle bounds how long after a script call every slot granted before it has been sent or
	// dropped: a slot is at most a horizon ahead and used at most a grace late, whatever the
	// setting; the rest is margin for the answer's trip back. See the package comment.
	settle = maxHorizon + maxGrace + 100*time.Millisecond
	// maxIntervalUS caps T at ~31.7 years, so a tiny rate cannot overflow the arithmetic of
	// the script or of time.Duration.
	maxIntervalUS = 1e15
)

// Override is one sender's own setting, replacing Config.Rate and Config.Burst for it.
type Override struct {
	// Rate is messages per second from the sender, for all processes together: > 0, at most
	// MaxRate.
	Rate float64
	// Burst is how many tokens may be handed out at once: 0 means DefaultBurst(Rate),
	// otherwise 1 to MaxBurst.
	Burst int
}

// RateSource returns the per-sender overrides, keyed by the sender's digits (E.164 without
// "+"); senders not in the map use the default. def is the default this process uses, for a
// source that wants to publish it (operators' tools show it). The Limiter calls it from one
// goroutine at a time: every 250 ms while callers wait, at most about four times a second.
type RateSource func(ctx context.Context, def Override) (map[string]Override, error)

// DefaultBurst is the burst of a rate without one: ceil(rate/10), at least 1.
func DefaultBurst(rate float64) int {
	if math.IsNaN(rate) || rate <= 0 {
		return 1
	}
	return max(1, int(math.Ceil(min(rate, MaxRate)/10)))
}

// CheckOverride says what is wrong with a per-sender setting, or nil. The Limiter ignores a
// setting it refuses (the sender then has the default), so bad data in Redis never breaks it.
func CheckOverride(o Override) error {
	var errs []error
	if math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) || o.Rate <= 0 || o.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("rate must be a number > 0 and at most %g messages per second, got %v", float64(MaxRate), o.Rate))
	}
	if o.Burst < 0 || o.Burst > MaxBurst {
		errs = append(errs, fmt.Errorf("burst must be 1 to %d (0: ceil(rate/10)), got %d", MaxBurst, o.Burst))
	}
	return errors.Join(errs...)
}

// params are everything derived from one (rate, burst) setting. A bucket holds a pointer to
// its sender's; a change of setting swaps the pointer, never the fields.
type params struct {
	rate       float64
	burst      int
	override   bool    // a per-sender setting, not the default
	intervalUS float64 // T, µs between slots
	tauUS      float64 // Burst·T, less T/2 (see tolerance)
	horizon    time.Duration
	maxBatch   int
	minBatch   int
	grace      time.Duration
	lead       time.Duration // how long before the next slot a fetch is made
	callLimit  rate.Limit
	callBurst  int
}

// derive computes a setting's parameters. Durations are worked out in float seconds and
// clamped before they become time.Duration, so extreme rates cannot overflow.
func derive(r float64, burst int) *params {
	if burst <= 0 {
		burst = DefaultBurst(r)
	}
	interval := min(1e6/r, maxIntervalUS)
	horizon := clampDur(batchSlots*interval/1e6, minHorizon, maxHorizon)
	batch := min(max(int(r*horizon.Seconds()), 1), maxBatch)
	return &params{
		rate:       r,
		burst:      burst,
		intervalUS: interval,
		tauUS:      tolerance(burst) * interval,
		horizon:    horizon,
		maxBatch:   batch,
		minBatch:   max(1, batch/2),
		grace:      grace(interval, burst),
		lead:       min(clampDur(4*interval/1e6, minLead, maxHorizon), horizon/2),
		callLimit:  rate.Limit(max(r, callsPerHzn/horizon.Seconds())),
		callBurst:  burst + 1,
	}
}

// clampDur is s seconds as a Duration within [lo, hi].
func clampDur(s float64, lo, hi time.Duration) time.Duration {
	if math.IsNaN(s) || s >= hi.Seconds() {
		return hi
	}
	return max(time.Duration(s*float64(time.Second)), lo)
}

// same reports whether p and q are the same setting.
func (p *params) same(q *params) bool {
	return p.rate == q.rate && p.burst == q.burst && p.override == q.override
}

// digits is how the settings name a sender: its number without "+".
func digits(sender string) string { return strings.TrimPrefix(sender, "+") }

// settings is the Limiter's copy of the per-sender overrides and the refresher that keeps it.
// The refresher runs only while some fetcher runs (callers wait), so an idle Limiter holds no
// goroutine and makes no call.
type settings struct {
	src RateSource
	def Override

	// readAt is when the last completed read started, failed or not, in ns since epoch
	// (monotonic); it is stored only once that read's settings have reached the buckets.
	// A read that started after a change was written has seen it.
	epoch  time.Time
	readAt atomic.Int64

	mu       sync.Mutex
	byDigits map[string]*params // valid overrides; the rest use the default
	inflight chan struct{}      // closed when the running read ends; nil if none runs
	looping  bool               // the refresh loop is alive
	fetchers int                // fetch goroutines alive
	idle     chan struct{}      // buffered 1: the last fetcher left, the loop may stop
}

// neverRead is readAt before the first read: older than any staleness bound.
const neverRead = math.MinInt64 / 2

// age is how long ago the last completed read of the settings started.
func (s *settings) age() time.Duration {
	return time.Since(s.epoch) - time.Duration(s.readAt.Load())
}

// paramsFor is the parameters sender has now: its override, or the default.
func (l *Limiter) paramsFor(sender string) *params {
	if l.set.src == nil {
		return &l.params
	}
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	if p := l.set.byDigits[digits(sender)]; p != nil {
		return p
	}
	return &l.params
}

// fetchStarted registers a fetcher and starts the refresh loop if it is not running.
func (l *Limiter) fetchStarted() {
	s := &l.set
	if s.src == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetchers++
	if !s.looping {
		s.looping = true
		go l.refreshLoop()
	}
}

// fetchStopped unregisters a fetcher; the last one lets the loop stop at once.
func (l *Limiter) fetchStopped() {
	s := &l.set
	if s.src == nil {
		return
	}
	s.mu.Lock()
	s.fetchers--
	last := s.fetchers == 0
	s.mu.Unlock()
	if last {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// refreshLoop starts a read of the settings refreshEvery after the last one started (at once
// if that one took longer) while any fetcher runs.
func (l *Limiter) refreshLoop() {
	s := &l.set
	for {
		s.mu.Lock()
		if s.fetchers == 0 {
			s.looping = false
			s.mu.Unlock()
			return
		}
		due := refreshEvery - s.age()
		s.mu.Unlock()
		if due > 0 {
			t := time.NewTimer(due)
			select {
			case <-t.C:
			case <-s.idle:
				t.Stop()
				continue
			}
		}
		<-l.startRefresh()
	}
}

// awaitFresh waits for a read of the settings when the last one is older than staleAfter
// (the process was idle), so no fetch asks for slots under a setting changed long ago.
func (l *Limiter) awaitFresh(ctx context.Context) {
	s := &l.set
	if s.src == nil || s.age() < staleAfter {
		return
	}
	select {
	case <-l.startRefresh():
	case <-ctx.Done():
	}
}

// awaitRead returns once the last read of the settings started less than staleAfter ago, so
// a slot is never used under settings older than that; it reads them if need be (only when
// the refresher has not run lately: the process was idle, or held slots without fetching).
// It gives up, returning nil, once until has passed: the slot is then dropped anyway.
func (l *Limiter) awaitRead(ctx context.Context, until time.Time) error {
	s := &l.set
	if s.src == nil {
		return nil
	}
	for s.age() >= staleAfter && !time.Now().After(until) {
		select {
		case <-l.startRefresh():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// startRefresh starts a read of the settings unless one runs, and returns a channel closed
// when it has ended and its result reached the buckets.
func (l *Limiter) startRefresh() <-chan struct{} {
	s := &l.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		s.inflight = make(chan struct{})
		go l.refresh(s.inflight)
	}
	return s.inflight
}

// refresh reads the settings once, keeps the valid ones (a failed read keeps the previous
// ones: fail static, the slots themselves still come from Redis), and hands each bucket
// whose setting changed its new parameters.
func (l *Limiter) refresh(done chan struct{}) {
	s := &l.set
	started := time.Since(s.epoch)
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	got, err := s.src(ctx, s.def)
	cancel()

	s.mu.Lock()
	if err != nil {
		l.rateErrs.Add(1)
	} else {
		next := make(map[string]*params, len(got))
		for d, o := range got {
			d = digits(d)
			if CheckOverride(o) != nil || d == "" {
				l.badRates.Add(1)
				continue
			}
			p := derive(o.Rate, o.Burst)
			p.override = true
			if old := s.byDigits[d]; old != nil && old.same(p) {
				p = old // keep the pointer: buckets compare it to see a change
			}
			next[d] = p
		}
		s.byDigits = next
	}
	s.mu.Unlock()

	if err == nil {
		l.mu.Lock()
		buckets := make(map[string]*bucket, len(l.buckets))
		for k, b := range l.buckets {
			buckets[k] = b
		}
		l.mu.Unlock()
		for sender, b := range buckets {
			b.setParams(l.paramsFor(sender))
		}
	}

	s.mu.Lock()
	s.readAt.Store(int64(started)) // after the buckets have their new settings
	s.inflight = nil
	s.mu.Unlock()
	close(done)
}

// Setting is the rate and burst the Limiter applies to sender now, and whether they are the
// sender's own (an override) rather than the default.
func (l *Limiter) Setting(sender string) (rate float64, burst int, override bool) {
	p := l.paramsFor(sender)
	return p.rate, p.burst, p.override
}
