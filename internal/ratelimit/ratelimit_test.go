package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pod is one Limiter on its own go-redis client, as a separate worker process would have.
func pod(t testing.TB, s *redistest.Server, cfg Config) *Limiter {
	t.Helper()
	l, err := New(s.Client(t), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// grants records when each Wait returned nil, across goroutines and pods.
type grants struct {
	mu    sync.Mutex
	times []time.Time
}

func (g *grants) add(ts time.Time) {
	g.mu.Lock()
	g.times = append(g.times, ts)
	g.mu.Unlock()
}

func (g *grants) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.times)
}

func (g *grants) sorted() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Clone(g.times)
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// hammer runs n goroutines that Wait on sender in a loop until ctx ends, recording grants.
// The returned func waits for them all to stop.
func hammer(ctx context.Context, t testing.TB, l *Limiter, sender string, n int, g *grants) (wait func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				if _, err := l.Wait(ctx, sender); err != nil {
					if ctx.Err() == nil {
						t.Errorf("Wait: %v with a live ctx", err)
					}
					return
				}
				g.add(time.Now())
			}
		})
	}
	return wg.Wait
}

// maxInWindow is the most grants in any half-open window [t, t+w) that starts at a grant.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

func TestLimitersOnOneRedisTogetherHoldTheRate(t *testing.T) {
	const (
		rate    = 50
		burst   = 5
		measure = 3 * time.Second
	)
	for _, pods := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d pods", pods), func(t *testing.T) {
			s := redistest.Start(t)
			var g grants
			var ls []*Limiter
			ctx, cancel := context.WithTimeout(context.Background(), measure)
			defer cancel()
			var waits []func()
			for range pods {
				l := pod(t, s, Config{Rate: rate, Burst: burst})
				ls = append(ls, l)
				waits = append(waits, hammer(ctx, t, l, "+919876543210", 40, &g))
			}
			for _, w := range waits {
				w()
			}

			ts := g.sorted()
			if len(ts) == 0 {
				t.Fatal("no grants")
			}
			// The measured window runs from the first grant to the last: the whole run.
			span := ts[len(ts)-1].Sub(ts[0]).Seconds()
			limit := rate*span + burst
			if got := float64(len(ts)); got > limit+1 {
				t.Errorf("%d grants in %.3fs; the bound is rate×window + burst = %.1f", len(ts), span, limit)
			}
			if got, floor := float64(len(ts)), 0.9*rate*span; got < floor {
				t.Errorf("%d grants in %.3fs: below 0.9 × rate = %.1f", len(ts), span, floor)
			}
			// +2: grants are timed where callers wake, which may lag the slot by the grace period.
			if m := maxInWindow(ts, time.Second); m > rate+burst+2 {
				t.Errorf("max grants in a 1 s window = %d, want ≤ rate + burst = %d (+2 wake-up slack)", m, rate+burst)
			}
			var trips, tokens uint64
			for i, l := range ls {
				st := l.Stats()
				if st.Tokens == 0 {
					t.Errorf("pod %d got no tokens: %+v", i, st)
				}
				trips += st.RoundTrips
				tokens += st.Tokens
			}
			perMsg := float64(trips) / float64(tokens)
			t.Logf("%d pods: %d grants in %.3fs (%.2f/s), max 1 s window %d, %d Redis round trips = %.3f per message",
				pods, len(ts), span, float64(len(ts)-1)/span, maxInWindow(ts, time.Second), trips, perMsg)
			if perMsg > 0.5 {
				t.Errorf("%.3f Redis round trips per message: the waiters are not sharing fetches", perMsg)
			}
		})
	}
}

func TestDifferentSendersDoNotShareABudget(t *testing.T) {
	const rate, burst = 20, 1
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: rate, Burst: burst})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var a, b grants
	wa := hammer(ctx, t, l, "+919800000001", 10, &a)
	wb := hammer(ctx, t, l, "+919800000002", 10, &b)
	wa()
	wb()
	for name, g := range map[string]*grants{"first": &a, "second": &b} {
		ts := g.sorted()
		span := ts[len(ts)-1].Sub(ts[0]).Seconds()
		if floor := 0.9 * rate * span; float64(len(ts)) < floor {
			t.Errorf("%s sender: %d grants in %.2fs, want ≥ %.1f (its own full rate)", name, len(ts), span, floor)
		}
	}
	keys, err := s.Client(t).Keys(context.Background(), "wabulk:rl:*").Result()
	slices.Sort(keys)
	want := []string{"wabulk:rl:{919800000001}", "wabulk:rl:{919800000001}:p", "wabulk:rl:{919800000002}", "wabulk:rl:{919800000002}:p"}
	if err != nil || !slices.Equal(keys, want) {
		t.Errorf("keys = %q, %v; want a TAT and a setting per sender, hash-tagged", keys, err)
	}
}

func TestCancelledWaitReturnsPromptlyAndPassesItsSlotOn(t *testing.T) {
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: 2, Burst: 1})
	bg := context.Background()
	start := time.Now()
	if _, err := l.Wait(bg, "1"); err != nil {
		t.Fatal(err)
	}

	// The next slot is 500 ms away; cancel the wait well before.
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { _, err := l.Wait(ctx, "1"); done <- err }()
	testkit.Eventually(t, 10*time.Second, "the waiter to hold a slot", func() bool { return l.Stats().Reserved == 2 })
	cancel()
	cancelled := time.Now()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > 50*time.Millisecond {
		t.Errorf("Wait returned %v after cancel", d)
	}

	// The cancelled caller's slot goes to the next one: it is granted at ~500 ms, not ~1 s.
	if _, err := l.Wait(bg, "1"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("next grant %v after the first; want the given-back slot at ~500ms", d)
	}

	// A deadline ends a wait the same way.
	dctx, dcancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer dcancel()
	if _, err := l.Wait(dctx, "1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline = %v, want context.DeadlineExceeded", err)
	}
	if st := l.Stats(); st.Tokens != 2 {
		t.Errorf("Stats = %+v, want 2 tokens", st)
	}
}

func TestRedisDownGrantsNothingNewAndGrantsResumeAfterRestart(t *testing.T) {
	const rate = 100
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: rate, Burst: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g grants
	wait := hammer(ctx, t, l, "1", 10, &g)
	defer wait()
	defer cancel()

	testkit.Eventually(t, 10*time.Second, "20 grants", func() bool { return g.count() >= 20 })
	s.Stop()
	stopped := time.Now()
	before := l.Stats()

	// Slots Redis granted before it died may still be used, within the horizon; then nothing.
	testkit.Eventually(t, 10*time.Second, "failed round trips", func() bool {
		return l.Stats().Errors >= 1 && time.Since(stopped) > l.horizon+200*time.Millisecond
	})
	quiet := stopped.Add(l.horizon + l.grace + 50*time.Millisecond)
	down := l.Stats()
	if down.Reserved != before.Reserved {
		t.Errorf("reserved %d slots while Redis was down", down.Reserved-before.Reserved)
	}
	if usedWhileDown := down.Tokens - before.Tokens; usedWhileDown > before.Reserved-before.Tokens {
		t.Errorf("%d grants while down, but only %d slots were held", usedWhileDown, before.Reserved-before.Tokens)
	}
	for _, x := range g.sorted() {
		if x.After(quiet) {
			t.Errorf("grant at %v after Redis stopped, past every held slot", x.Sub(stopped))
		}
	}
	downFor := time.Since(stopped)
	if trips := down.RoundTrips - before.RoundTrips; float64(trips) > downFor.Seconds()/minBackoff.Seconds() {
		t.Errorf("%d round trips in %v down: not backing off", trips, downFor)
	}

	s.Restart(t)
	n := g.count()
	testkit.Eventually(t, 10*time.Second, "grants after restart", func() bool { return g.count() >= n+20 })
	cancel()
	wait()
	t.Logf("down %v: %d failed round trips; stats %+v", downFor.Round(time.Millisecond), down.Errors-before.Errors, l.Stats())
}

func TestInvalidConfigNamesTheVariable(t *testing.T) {
	s := redistest.Start(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero rate", Config{}, "WABULK_RATE"},
		{"negative rate", Config{Rate: -1}, "WABULK_RATE"},
		{"NaN rate", Config{Rate: math.NaN()}, "WABULK_RATE"},
		{"infinite rate", Config{Rate: math.Inf(1)}, "WABULK_RATE"},
		{"negative burst", Config{Rate: 80, Burst: -1}, "WABULK_BURST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(s.Client(t), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
			}
		})
	}
	if _, err := New(nil, Config{Rate: 1}); err == nil {
		t.Error("New(nil client) succeeded")
	}
}

func TestDefaultsAndKeys(t *testing.T) {
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: 80})
	if burst := l.tauUS / l.intervalUS; math.Abs(burst-7.5) > 1e-9 {
		t.Errorf("tolerance at rate 80 = %v slots, want ceil(80/10) = 8, less half a slot", burst)
	}
	l = pod(t, s, Config{Rate: 0.5})
	if burst := l.tauUS / l.intervalUS; math.Abs(burst-1) > 1e-9 {
		t.Errorf("default burst at rate 0.5 = %v, want at least 1", burst)
	}
	l = pod(t, s, Config{Rate: 1, Prefix: "x"})
	if k := l.key("+919876543210"); k != "x:rl:{919876543210}" {
		t.Errorf("key = %q", k)
	}
	if k := l.key("a{b}"); k != "x:rl:{a_b_}" {
		t.Errorf("key with braces = %q, want them replaced so the hash tag holds", k)
	}
}

func TestBurstIsGrantedAtOnceThenTheRate(t *testing.T) {
	s := redistest.Start(t)
	// Burst 4: three at once, the fourth half a slot later (see tolerance), then one per 100 ms.
	l := pod(t, s, Config{Rate: 10, Burst: 4})
	start := time.Now()
	var at []time.Duration
	for range 6 {
		if _, err := l.Wait(context.Background(), "1"); err != nil {
			t.Fatal(err)
		}
		at = append(at, time.Since(start))
	}
	for i, d := range at {
		var want time.Duration
		if i >= 3 {
			want = time.Duration(i-3)*100*time.Millisecond + 50*time.Millisecond
		}
		if d < want-5*time.Millisecond || d > want+60*time.Millisecond {
			t.Errorf("grant %d at %v, want ~%v", i, d, want)
		}
	}
}

// Pooled extras are the only slots a caller may use well after Redis read its clock, so the
// script charges them as if used a grace later: a send never comes after its slot's charge,
// which is what keeps the window bound (see the package doc). When the rate binds, none is granted.
func TestExtraSlotsAreChargedUntilTheyExpireAndOnlyWhenDueNow(t *testing.T) {
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: 1000, Burst: 100}) // T 1 ms, τ 99.5 ms, grace 49.5 ms → 49 ms
	ctx := context.Background()
	T := time.Millisecond
	if l.grace != 49*time.Millisecond+500*time.Microsecond {
		t.Fatalf("grace = %v, want 49.5ms", l.grace)
	}

	g, _, err := l.reserve(ctx, &l.params, l.key("1"), 1, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// One slot for the caller, then extras from now + grace while still conformant now:
	// (τ − grace)/T = 50 of them, so the burst room is spent, not doubled.
	if g.n != 1 || g.extra != 50 {
		t.Fatalf("grant = %+v, want 1 slot and 50 extras", g)
	}
	if want := l.grace + 50*T; g.after < want || g.after > want+T {
		t.Errorf("TAT after the grant = now + %v, want now + grace + 50·T = %v", g.after, want)
	}
	if d := l.conformAt(float64(g.after.Microseconds())); d > 0 {
		t.Errorf("last extra conformant in %v, want now", d)
	}

	// The burst is spent: the next slot is in the future, so no extras however many are asked.
	g, _, err = l.reserve(ctx, &l.params, l.key("1"), 5, 5, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if g.n != 5 || g.extra != 0 || l.slotOffset(g, 4) == 0 {
		t.Errorf("grant with the rate binding = %+v, want 5 future slots and no extras", g)
	}
}

// At a rate that does not bind, callers that arrive one by one take pooled slots instead of
// calling Redis each: the worker benchmark's throughput phase (50 callers, WABULK_RATE=1e6).
func TestCallersBelowTheRateShareCalls(t *testing.T) {
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: 1e6})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for {
				if _, err := l.Wait(ctx, "1"); err != nil {
					return
				}
				work := time.NewTimer(4*time.Millisecond + rand.N(8*time.Millisecond))
				select {
				case <-work.C:
				case <-ctx.Done():
					work.Stop()
					return
				}
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	perMsg := float64(st.RoundTrips) / float64(st.Tokens)
	t.Logf("stats %+v: %.4f round trips per message", st, perMsg)
	if st.Tokens < 1000 || perMsg > 0.3 {
		t.Errorf("%d messages at %.4f round trips each, want ≥ 1000 at ≤ 0.3", st.Tokens, perMsg)
	}
}

// Pooled slots are the only ones a caller may use up to a grace after Redis read its clock.
// A flow below the rate keeps some in the pool; then a wave arrives and the rate binds for a
// second. The window that starts with the wave holds the aged pooled slots, the burst, and a
// second at the rate: still at most rate + burst, because pooled slots were charged as if used
// late (counting the burst Redis regained in the meantime would go past it).
func TestWaveAfterAFlowKeepsTheWindowBound(t *testing.T) {
	const rate, burst = 1000, 100
	for run := range 3 {
		s := redistest.Start(t)
		l := pod(t, s, Config{Rate: rate, Burst: burst})
		ctx, cancel := context.WithTimeout(context.Background(), 1800*time.Millisecond)
		var g grants
		var wg sync.WaitGroup
		caller := func(pause time.Duration) {
			for {
				if _, err := l.Wait(ctx, "1"); err != nil {
					return
				}
				g.add(time.Now())
				if pause == 0 {
					continue
				}
				work := time.NewTimer(pause/2 + rand.N(pause))
				select {
				case <-work.C:
				case <-ctx.Done():
					work.Stop()
					return
				}
			}
		}
		for range 14 { // ~700 messages/s: below the rate, pooled slots in use
			wg.Go(func() { caller(20 * time.Millisecond) })
		}
		testkit.Eventually(t, 10*time.Second, "pooled slots in use", func() bool {
			st := l.Stats()
			return st.Tokens > 200 && st.Reserved > st.RoundTrips*3
		})
		time.Sleep(rand.N(20 * time.Millisecond)) // the wave comes at any age of the pool
		for range 100 {
			wg.Go(func() { caller(0) })
		}
		wg.Wait()
		cancel()
		ts := g.sorted()
		m := maxInWindow(ts, time.Second)
		t.Logf("run %d: %d grants, max 1 s window %d (bound %d), stats %+v", run, len(ts), m, rate+burst, l.Stats())
		if m > rate+burst+2 {
			t.Errorf("run %d: max grants in a 1 s window = %d, want ≤ %d (+2 wake-up slack)", run, m, rate+burst)
		}
	}
}
