package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

type latencyResult struct {
	side             string
	target, achieved float64 // enqueue rate asked and achieved, per second
	jobs             int
	p50, p90, p99    time.Duration
	max              time.Duration
}

// latency enqueues at a steady rate (half the worker's measured capacity) while the worker
// runs, and measures, per job, from just before the enqueue call to the sandbox's arrival time
// of its Kaleyra call (joined on the recipient). side "wabulk" enqueues through the producer's
// Send (validation, ledger count) to the in-process worker; side "bare" enqueues the request
// body with a bare asynq Enqueue to the bare handler, with the same poll settings.
func (b *bench) latency(ctx context.Context, side string, capacity float64, d time.Duration) (latencyResult, error) {
	res := latencyResult{side: side, target: capacity / 2}
	res.jobs = int(res.target * d.Seconds())
	sb, err := startSandbox(0, 0)
	if err != nil {
		return res, err
	}
	defer sb.close()
	if err := b.redis.flush(ctx); err != nil {
		return res, err
	}
	var send func(i int) error
	var stop func() error
	if side == "wabulk" {
		p, err := producer.New(b.redis.connOpt(), producer.Config{Queue: queue, DefaultFrom: sender})
		if err != nil {
			return res, err
		}
		defer p.Close()
		send = func(i int) error {
			out, err := p.Send(ctx, "latency", job.Fields{To: recipient(i), Type: "image", MediaLink: mediaLink, Ref: fmt.Sprint("r", i)})
			if err == nil && (len(out) != 1 || out[0].Status != producer.StatusEnqueued) {
				err = fmt.Errorf("send %d: %+v", i, out)
			}
			return err
		}
		w, err := startInProcessWorker(workerConfig(b.redis, sb, 50, unboundRate), filepath.Join(b.tmp, "latency.log"))
		if err != nil {
			return res, err
		}
		stop = w.stop
	} else {
		c := asynq.NewClient(b.redis.connOpt())
		defer c.Close()
		send = func(i int) error {
			p := payload("latency", i)
			body, err := kaleyraBody(p)
			if err == nil {
				_, err = c.Enqueue(asynq.NewTask("bench:bare", body), taskOptions(job.TaskID(p))...)
			}
			return err
		}
		s, err := startBare(b.redis, sb, 50, false)
		if err != nil {
			return res, err
		}
		stop = func() error { s.stop(); return nil }
	}
	time.Sleep(time.Second) // the worker is up and polling an empty queue, as in production

	enq := make([]time.Time, res.jobs)
	const pacers = 4 // each paces every 4th job, so one slow Send does not hold up the rest
	interval := time.Duration(float64(time.Second) / res.target)
	t0 := time.Now()
	err = parallel(pacers, pacers, func(k int) error {
		for i := k; i < res.jobs; i += pacers {
			if wait := time.Until(t0.Add(time.Duration(i) * interval)); wait > 0 {
				time.Sleep(wait)
			}
			enq[i] = time.Now()
			if err := send(i); err != nil {
				return err
			}
		}
		return nil
	})
	res.achieved = float64(res.jobs) / time.Since(t0).Seconds()
	if err == nil {
		err = sb.waitCalls(int64(res.jobs), time.Minute)
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return res, err
	}
	calls, err := sb.sortedCalls()
	if err != nil {
		return res, err
	}
	lat := make([]time.Duration, 0, len(calls))
	for _, c := range calls {
		i := index(c.To)
		if i < 0 || i >= res.jobs {
			return res, fmt.Errorf("call to %s is not one of the enqueued jobs", c.To)
		}
		lat = append(lat, c.Time.Sub(enq[i]))
	}
	slices.Sort(lat)
	res.p50, res.p90, res.p99 = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
	res.max = lat[len(lat)-1]
	return res, nil
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
