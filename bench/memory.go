package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

type memResult struct {
	conc        int
	rate        float64 // sends/s while sampled
	maxRSS, hwm int64   // KiB: highest VmRSS sampled under load, VmHWM at the end of the load
	peak        int64   // KiB: VmHWM of the whole life, shutdown included
}

// memory runs one `wabulk worker` process at conc against a sandbox slow enough (latency ±
// jitter) that conc jobs are in flight at once, for d, sampling /proc/<pid>/status.
func (b *bench) memory(ctx context.Context, sb *fakeKaleyra, conc, jobs int, d time.Duration) (memResult, error) {
	res := memResult{conc: conc}
	if err := b.redis.flush(ctx); err != nil {
		return res, err
	}
	sb.reset()
	campaign := fmt.Sprintf("mem%d", conc)
	if err := enqueueCampaign(ctx, b.redis, campaign, 0, jobs); err != nil {
		return res, err
	}
	p, err := startWorkerProc(b.bin, workerEnv(b.redis, sb, conc, unboundRate), filepath.Join(b.tmp, campaign+".log"))
	if err != nil {
		return res, err
	}
	// Sample from the second call on: start-up is not load.
	werr := sb.waitCalls(1, 30*time.Second)
	t0, c0 := time.Now(), sb.calls.Load()
	time.Sleep(d)
	n := sb.calls.Load() - c0
	res.rate = float64(n) / time.Since(t0).Seconds()
	res.maxRSS, res.hwm = p.maxRSS.Load(), p.hwm.Load()
	peak, err := p.stop(60 * time.Second)
	if werr != nil {
		return res, werr
	}
	if err != nil {
		return res, err
	}
	res.peak = peak
	if sb.calls.Load() >= int64(jobs) {
		return res, fmt.Errorf("the queue ran dry during the sample (%d jobs): enqueue more", jobs)
	}
	return res, nil
}
