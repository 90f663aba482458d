// Command bench is `make bench`: it measures wabulk against baselines in the same run and
// writes bench/RESULTS.md.
//
// It starts its own redis-server (unix socket in a temporary directory, never the machine's
// Redis) and in-process sandboxes (internal/sandbox, the fake Kaleyra), builds the wabulk
// binary, and runs, in this order:
//
//  1. worker throughput: the real worker package vs. a bare asynq handler POSTing the same
//     bytes to the same zero-latency sandbox, same concurrency and poll settings (ABBA order twice, after a warm-up);
//  2. a CPU profile of the in-process worker under the same load;
//  3. enqueue-to-Kaleyra latency at half the measured capacity, wabulk and bare side by side;
//  4. worker RSS at concurrency 50 and 500 (the binary, under load);
//  5. rate accuracy: three `wabulk worker` processes sharing one sender at 500/s and 80/s;
//  6. enqueue: a 1,000,000-row CSV through `wabulk enqueue` vs. a bare asynq Enqueue loop;
//  7. lanes (one `wabulk worker` at 50/s per sender): three senders' campaigns at once, and a
//     small campaign behind a big one on one sender;
//  8. callbacks: status callbacks posted to `wabulk serve`'s receiver vs. a bare net/http handler
//     that writes each status to Redis once (bench/callbacks.go);
//  9. Redis memory per job, pending and finished, wabulk vs. bare asynq;
//  10. many lanes (bench/manylanes.go): 5,000 single messages posted without a campaign (a lane
//     each) vs. naming one campaign; 100 posts/s for 60 s; the Redis cost of 5,000 idle lanes
//     under two workers; a new campaign's first send among them.
//
// Every figure is printed as it is measured; RESULTS.md is written at the end. -scale shrinks
// the job counts and durations for a quick trial (its figures are not the benchmark's).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type bench struct {
	root, tmp, bin string
	only           string // -only: the phases to run, empty for all
	redis          *redisServer

	tputJobs, profJobs int
	latDur             time.Duration
	rateJobs500        int
	rateJobs80         int
	memJobs            int
	memDur             time.Duration
	enqRows            int
	redisMemJobs       int
	scale              float64
	started            time.Time
	machine            machine
	res                results
	errs               []error
	buildTime          time.Duration
}

type results struct {
	tput     *tputResult
	prof     *profileResult
	lat      []latencyResult
	mem      []memResult
	rate     []rateResult
	enq      *enqueueResult
	lanes    *lanesResult
	redisMem *redisMemResult
	cb       *callbacksResult
	many     *manyResult
	total    time.Duration
	phaseDur map[string]time.Duration
	phaseLA  map[string]string // load average at the start and end of each phase
}

func (b *bench) logf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func main() {
	scale := flag.Float64("scale", 1, "multiply job counts and durations (quick trials only: figures are comparable at 1)")
	out := flag.String("out", "", "results file (default bench/RESULTS.md of the module)")
	only := flag.String("only", "", "comma-separated phase numbers or names to run, e.g. 1,6, lanes or 10 (quick trials; docs/performance.md quotes full runs)")
	keep := flag.Bool("keep", false, "keep the work directory (CPU profile, logs) and print its path")
	flag.Parse()
	if err := run(*scale, *out, *only, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(scale float64, out, only string, keep bool) error {
	b := &bench{scale: scale, only: only, started: time.Now(), machine: readMachine(),
		tputJobs: sc(20000, scale), profJobs: sc(15000, scale), latDur: time.Duration(float64(10*time.Second) * scale),
		rateJobs500: sc(10000, scale), rateJobs80: sc(2400, scale), memJobs: sc(30000, scale),
		memDur: time.Duration(float64(8*time.Second) * scale), enqRows: sc(1000000, scale),
		redisMemJobs: sc(100000, scale)}
	b.res.phaseDur = map[string]time.Duration{}
	b.res.phaseLA = map[string]string{}
	var err error
	if b.root, err = moduleRoot(); err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(b.root, "bench", "RESULTS.md")
	}
	if b.tmp, err = os.MkdirTemp("", "wabulk-bench"); err != nil {
		return err
	}
	if keep {
		defer b.logf("work directory kept: %s", b.tmp)
	} else {
		defer os.RemoveAll(b.tmp)
	}
	b.logf("wabulk bench: %d cores (%s), %s RAM, %s, load average %s", b.machine.cores, b.machine.model,
		b.machine.memTotal, b.machine.goVer, b.machine.loadAvg)

	t := time.Now()
	b.bin = filepath.Join(b.tmp, "wabulk")
	build := exec.Command("go", "build", "-trimpath", "-o", b.bin, "./cmd/wabulk")
	build.Dir = b.root
	if o, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/wabulk: %v\n%s", err, o)
	}
	b.buildTime = time.Since(t)
	if b.redis, err = startRedis(); err != nil {
		return err
	}
	defer b.redis.stop()
	b.logf("built wabulk in %v; redis-server %s on %s", b.buildTime.Round(time.Millisecond), b.redis.version, b.redis.sock)

	ctx := context.Background()
	b.phase("1. worker throughput", func() error {
		r, err := b.throughput(ctx)
		if err == nil {
			b.res.tput = &r
			b.logf("  => wabulk %.0f sends/s, bare %.0f sends/s, ratio %.3f (target ≥ %.2f)", r.wabulk, r.bare, r.ratio, targetTputRatio)
		}
		return err
	})
	b.phase("6. CPU profile", func() error {
		r, err := b.profile(ctx)
		if err == nil {
			b.res.prof = &r
			b.logf("  profiled %d jobs at %.0f sends/s; samples by role:\n%s", r.jobs, r.rate, indent(r.tags))
			for _, l := range r.flat {
				b.logf("  %s", l)
			}
		}
		return err
	})
	capacity := 0.0
	if b.res.tput != nil {
		capacity = b.res.tput.wabulk
	}
	b.phase("4. latency", func() error {
		if capacity == 0 {
			return errors.New("no capacity measured (throughput failed)")
		}
		for _, side := range []string{"bare", "wabulk"} {
			r, err := b.latency(ctx, side, capacity, b.latDur)
			if err != nil {
				return fmt.Errorf("%s: %w", side, err)
			}
			b.res.lat = append(b.res.lat, r)
			b.logf("  %-6s at %.0f/s (asked %.0f/s), %d jobs: p50 %v p90 %v p99 %v max %v", side, r.achieved, r.target, r.jobs,
				ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max))
		}
		return nil
	})
	b.phase("5. memory", func() error {
		sb, err := startSandbox(200*time.Millisecond, 50*time.Millisecond)
		if err != nil {
			return err
		}
		defer sb.close()
		for _, c := range []int{50, 500} {
			r, err := b.memory(ctx, sb, c, b.memJobs, b.memDur)
			if err != nil {
				return fmt.Errorf("concurrency %d: %w", c, err)
			}
			b.res.mem = append(b.res.mem, r)
			b.logf("  concurrency %3d: %5.0f sends/s, VmRSS max %s, VmHWM %s, peak incl. shutdown %s", c, r.rate,
				mib(r.maxRSS), mib(r.hwm), mib(r.peak))
		}
		return nil
	})
	b.phase("2. rate accuracy", func() error {
		sb, err := startSandbox(100*time.Millisecond, 50*time.Millisecond)
		if err != nil {
			return err
		}
		defer sb.close()
		for _, rc := range []struct {
			rate float64
			jobs int
		}{{500, b.rateJobs500}, {80, b.rateJobs80}} {
			r, err := b.rateAccuracy(ctx, sb, rc.rate, rc.jobs)
			if err != nil {
				return fmt.Errorf("rate %g: %w", rc.rate, err)
			}
			b.res.rate = append(b.res.rate, r)
			b.logf("  rate %g burst %d, %d jobs, 3 processes: achieved %.1f/s (%.4f), max in 1 s %d (limit %d), "+
				"per message: %.2f client commands, %.3f limiter EVALSHA, %.1f commands incl. scripts",
				r.rate, r.burst, r.jobs, r.achieved, r.achieved/r.rate, r.maxWindow, int(r.rate)+r.burst,
				r.clientPerMsg, r.limiterPerMsg, r.serverPerMsg)
		}
		return nil
	})
	b.phase("3. enqueue", func() error {
		r, err := b.enqueue(ctx, b.enqRows)
		if err == nil {
			b.res.enq = &r
			b.logf("  %d rows: wabulk enqueue %.0f rows/s (%v), bare loop %.0f rows/s (%v), ratio %.3f, peak RSS %s, payload bytes identical: %v",
				r.rows, r.ours, r.elapsed.Round(time.Millisecond), r.bare, r.bareElapsed.Round(time.Millisecond), r.ratio, mib(r.peakKiB), r.sameBytes)
		}
		return err
	})
	b.phase("9. redis memory", func() error {
		r, err := b.redisMemory(ctx, b.redisMemJobs)
		if err == nil {
			b.res.redisMem = &r
			b.logf("  %d jobs, bytes per job: pending wabulk %.0f, bare %.0f; finished wabulk %.0f, bare %.0f",
				r.jobs, r.pending, r.pendingBare, r.done, r.doneBare)
			for _, pt := range r.parts {
				b.logf("    %-45s %7.1f B/job (%d keys)", pt.kind, pt.bytes, pt.keys)
			}
		}
		return err
	})
	b.phase("7. lanes", func() error {
		r, err := b.lanes(ctx)
		if err == nil {
			b.res.lanes = &r
		}
		return err
	})
	b.phase("8. callbacks", func() error {
		r, err := b.callbacks(ctx)
		if err == nil {
			b.res.cb = &r
			b.logf("  => wabulk %.0f callbacks/s (p99 %s), bare %.0f callbacks/s (p99 %s), ratio %.3f", r.wabulk, msf(r.wP99), r.bare, msf(r.bP99), r.ratio)
		}
		return err
	})
	b.phase("10. many lanes", func() error {
		r, err := b.manyLanes(ctx)
		b.res.many = &r // what was measured before a failure is reported too
		return err
	})
	b.res.total = time.Since(b.started)
	b.logf("total %v", b.res.total.Round(time.Second))
	md := b.report()
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	b.logf("wrote %s", out)
	return errors.Join(b.errs...)
}

func (b *bench) phase(name string, f func() error) {
	num, title, _ := strings.Cut(name, ". ")
	if b.only != "" && !slices.ContainsFunc(strings.Split(b.only, ","), func(o string) bool {
		o = strings.TrimSpace(o)
		return o == num || strings.EqualFold(o, title)
	}) {
		return
	}
	la0 := readMachine().loadAvg
	b.logf("%s (load average %s)", name, la0)
	t := time.Now()
	if err := f(); err != nil {
		b.logf("  FAILED: %v", err)
		b.errs = append(b.errs, fmt.Errorf("%s: %w", name, err))
	}
	b.res.phaseDur[name] = time.Since(t)
	b.res.phaseLA[name] = la0 + " → " + readMachine().loadAvg
}

func sc(n int, scale float64) int { return max(1, int(float64(n)*scale)) }

// moduleRoot is the directory holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the wabulk module (no go.mod found)")
		}
		dir = parent
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func indent(s string) string {
	var out string
	for _, l := range splitLines(s) {
		out += "    " + l + "\n"
	}
	return out
}
