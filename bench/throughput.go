package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/job"
)

// tputRun is one run of N jobs through either side.
type tputRun struct {
	side    string // "wabulk" or "bare"
	rate    float64
	cmdsPer float64 // Redis commands processed per message (inside scripts included)
	top     map[string]int64
	cpuUS   float64 // CPU µs per message of this process (worker or bare handler, sandbox, Redis clients)
	redisUS float64 // CPU µs per message of redis-server
}

type tputResult struct {
	jobs, conc   int
	runs         []tputRun
	wabulk, bare float64 // mean sends/s
	ratio        float64
	wCmds, bCmds float64
	wTop, bTop   map[string]int64 // commands of the last run of each side, per 1000 messages
	wCPU, bCPU   float64          // µs of this process per message, mean
	wRedis, bRed float64          // µs of redis-server per message, mean
}

// throughput runs the worker and the bare handler in ABBA order twice (bare, wabulk, wabulk,
// bare, wabulk, bare, bare, wabulk) so drift on a shared machine falls on both sides alike,
// after a quarter-size warm-up run of each side that is not counted (the first run of a
// process was the slowest in every trial, whichever side it was).
func (b *bench) throughput(ctx context.Context) (tputResult, error) {
	res := tputResult{jobs: b.tputJobs, conc: 50}
	sb, err := startSandbox(0, 0)
	if err != nil {
		return res, err
	}
	defer sb.close()
	for k, side := range []string{"bare", "wabulk"} {
		if _, err := b.tputOnce(ctx, sb, side, fmt.Sprintf("warm%d", k), max(1, res.jobs/4), res.conc); err != nil {
			return res, fmt.Errorf("%s warm-up: %w", side, err)
		}
	}
	for k, side := range []string{"bare", "wabulk", "wabulk", "bare", "wabulk", "bare", "bare", "wabulk"} {
		run, err := b.tputOnce(ctx, sb, side, fmt.Sprintf("tput%d", k), res.jobs, res.conc)
		if err != nil {
			return res, fmt.Errorf("%s run: %w", side, err)
		}
		b.logf("  %-6s %8.0f sends/s  %5.1f Redis commands/message  CPU/message: %5.0f µs here, %5.0f µs redis-server",
			side, run.rate, run.cmdsPer, run.cpuUS, run.redisUS)
		res.runs = append(res.runs, run)
	}
	w, bare := meanRun(res.runs, "wabulk"), meanRun(res.runs, "bare")
	res.wabulk, res.wCmds, res.wTop, res.wCPU, res.wRedis = w.rate, w.cmdsPer, w.top, w.cpuUS, w.redisUS
	res.bare, res.bCmds, res.bTop, res.bCPU, res.bRed = bare.rate, bare.cmdsPer, bare.top, bare.cpuUS, bare.redisUS
	res.ratio = res.wabulk / res.bare
	return res, nil
}

// meanRun averages the runs of one side; its command table is the last run's.
func meanRun(runs []tputRun, side string) tputRun {
	m := tputRun{side: side}
	n := 0.0
	for _, r := range runs {
		if r.side != side {
			continue
		}
		m.rate += r.rate
		m.cmdsPer += r.cmdsPer
		m.cpuUS += r.cpuUS
		m.redisUS += r.redisUS
		m.top = r.top
		n++
	}
	m.rate, m.cmdsPer, m.cpuUS, m.redisUS = m.rate/n, m.cmdsPer/n, m.cpuUS/n, m.redisUS/n
	return m
}

func (b *bench) tputOnce(ctx context.Context, sb *fakeKaleyra, side, campaign string, n, conc int) (tputRun, error) {
	run := tputRun{side: side}
	if err := b.redis.flush(ctx); err != nil {
		return run, err
	}
	sb.reset()
	if side == "wabulk" {
		if err := enqueueCampaign(ctx, b.redis, campaign, 0, n); err != nil {
			return run, err
		}
	} else if err := enqueueBare(b.redis, campaign, n); err != nil {
		return run, err
	}
	before, err := b.redis.stats(ctx)
	if err != nil {
		return run, err
	}
	cpu0, rcpu0 := selfCPU(), b.redis.cpu()
	var stop func() error
	if side == "wabulk" {
		w, err := startInProcessWorker(workerConfig(b.redis, sb, conc, unboundRate), filepath.Join(b.tmp, campaign+".log"))
		if err != nil {
			return run, err
		}
		stop = w.stop
	} else {
		s, err := startBare(b.redis, sb, conc, false)
		if err != nil {
			return run, err
		}
		stop = func() error { s.stop(); return nil }
	}
	werr := sb.waitCalls(int64(n), 5*time.Minute)
	after, serr := b.redis.stats(ctx)
	cpu, rcpu := selfCPU()-cpu0, b.redis.cpu()-rcpu0
	if err := stop(); err != nil {
		return run, err
	}
	if werr != nil {
		return run, werr
	}
	if serr != nil {
		return run, serr
	}
	calls, err := sb.sortedCalls()
	if err != nil {
		return run, err
	}
	run.rate = callRate(calls)
	d := after.sub(before)
	run.cmdsPer = float64(d.total) / float64(n)
	run.cpuUS = float64(cpu.Microseconds()) / float64(n)
	run.redisUS = float64(rcpu.Microseconds()) / float64(n)
	run.top = map[string]int64{}
	for k, v := range d.calls {
		run.top[k] = v * 1000 / int64(n)
	}
	return run, nil
}

// enqueueBare puts n tasks whose payload is the Kaleyra request body of row i (what the bare
// handler POSTs as is), with the producer's TaskIDs and options.
func enqueueBare(r *redisServer, campaign string, n int) error {
	c := asynq.NewClient(r.connOpt())
	defer c.Close()
	return parallel(n, 16, func(i int) error {
		p := payload(campaign, i)
		body, err := kaleyraBody(p)
		if err != nil {
			return err
		}
		_, err = c.Enqueue(asynq.NewTask("bench:bare", body), taskOptions(job.TaskID(p))...)
		return err
	})
}
