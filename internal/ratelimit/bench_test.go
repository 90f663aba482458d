package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/redistest"
)

// BenchmarkWait measures what the limiter costs Redis: round trips per token granted, with
// 3 pods sharing one sender at the benchmark's rates (demand above the rate, so the rate
// sets the pace and the figure is the steady-state cost), and one pod at a rate too high to
// bind (the figure is then the per-call overhead). The last case is the worker benchmark's
// throughput phase: WABULK_RATE=1e6, which never binds, and 50 callers that each spend
// ~8 ms on a message between Waits (±50 %, so they arrive one by one, not in waves), which
// is about the 6,000 sends/s the worker reaches there.
//
//	go test -run '^$' -bench Wait -benchtime 2s ./internal/ratelimit
func BenchmarkWait(b *testing.B) {
	for _, bc := range []struct {
		rate        float64
		pods, procs int
		work        time.Duration // a caller's time between Waits, the send
	}{
		{80, 3, 50, 0},
		{500, 3, 50, 0},
		{100_000, 1, 200, 0},
		{1_000_000, 1, 50, 8 * time.Millisecond},
	} {
		name := fmt.Sprintf("rate=%g/pods=%d", bc.rate, bc.pods)
		if bc.work > 0 {
			name += fmt.Sprintf("/callers=%d/work=%v", bc.procs, bc.work)
		}
		b.Run(name, func(b *testing.B) {
			s := redistest.Start(b)
			ls := make([]*Limiter, bc.pods)
			for i := range ls {
				ls[i] = pod(b, s, Config{Rate: bc.rate})
			}
			var next atomic.Int64
			b.SetParallelism(max(1, bc.pods*bc.procs/runtime.GOMAXPROCS(0)))
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				l := ls[int(next.Add(1))%bc.pods]
				for pb.Next() {
					if _, err := l.Wait(context.Background(), "+919876543210"); err != nil {
						b.Error(err)
						return
					}
					if bc.work > 0 {
						time.Sleep(bc.work/2 + rand.N(bc.work))
					}
				}
			})
			b.StopTimer()
			var trips, tokens uint64
			for _, l := range ls {
				st := l.Stats()
				trips += st.RoundTrips
				tokens += st.Tokens
			}
			b.ReportMetric(float64(trips)/float64(tokens), "roundtrips/token")
			b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tokens/s")
		})
	}
}
