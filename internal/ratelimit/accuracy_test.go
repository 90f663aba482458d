package ratelimit

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/redistest"
)

// TestThreePodsWithSlowSendsHitTheRate is the shape of the benchmark's rate-accuracy run,
// shortened: 3 pods × 50 workers sharing one sender at rate 500, each send taking
// 100 ms ± 50 ms after its token. Demand (~1000/s) exceeds the rate, so the achieved rate
// must be the configured one (the benchmark's target is 0.97–1.00; the test allows 0.9 because
// the machines it runs on are shared and a starved process drops late slots rather than send
// them late), and no 1 s window may hold more than rate + burst.
func TestThreePodsWithSlowSendsHitTheRate(t *testing.T) {
	const (
		rate    = 500
		burst   = 50
		pods    = 3
		workers = 50
		measure = 4 * time.Second
	)
	s := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), measure)
	defer cancel()
	var g grants
	var wg sync.WaitGroup
	var ls []*Limiter
	for range pods {
		l := pod(t, s, Config{Rate: rate})
		ls = append(ls, l)
		for range workers {
			wg.Go(func() {
				for {
					if _, err := l.Wait(ctx, "+919876543210"); err != nil {
						return
					}
					g.add(time.Now())
					send := time.NewTimer(50*time.Millisecond + rand.N(100*time.Millisecond))
					select {
					case <-send.C:
					case <-ctx.Done():
						send.Stop()
						return
					}
				}
			})
		}
	}
	wg.Wait()
	ts := g.sorted()
	span := ts[len(ts)-1].Sub(ts[0]).Seconds()
	achieved := float64(len(ts)-burst) / span / rate
	var trips, tokens, unused uint64
	for _, l := range ls {
		st := l.Stats()
		trips += st.RoundTrips
		tokens += st.Tokens
		unused += st.Unused
	}
	t.Logf("%d grants in %.3fs: achieved %.4f of the rate; max 1 s window %d (bound %d); %.4f Redis round trips per message; %d slots unused",
		len(ts), span, achieved, maxInWindow(ts, time.Second), rate+burst, float64(trips)/float64(tokens), unused)
	if achieved < 0.9 || achieved > 1.005 {
		t.Errorf("achieved %.4f of the rate, want 0.9–1.00 (0.97–1.00 on a quiet machine)", achieved)
	}
	// Grants are timed where callers wake, not where Redis scheduled them; a wake-up may lag its
	// slot by up to the grace period (2 slots here), so two slots of slack are allowed.
	if m := maxInWindow(ts, time.Second); m > rate+burst+2 {
		t.Errorf("max grants in a 1 s window = %d, want ≤ %d (+2 wake-up slack)", m, rate+burst)
	}
}
