package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

func splitLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		out = append(out, strings.TrimRight(l, "\n"))
	}
	return out
}

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// report renders RESULTS.md.
func (b *bench) report() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	m := b.machine
	p("# wabulk benchmark results")
	p("")
	p("Written by `make bench` (`go run ./bench`) on %s. Machine: %d cores (%s), %s RAM; %s; redis-server %s on a unix socket, "+
		"started by the benchmark; sandbox (internal/sandbox) in the benchmark process. Load average at start: %s. "+
		"Whole run: %v (build %v).", b.started.UTC().Format("2006-01-02 15:04 MST"), m.cores, m.model, m.memTotal, m.goVer,
		b.redis.version, m.loadAvg, b.res.total.Round(time.Second), b.buildTime.Round(time.Second))
	if b.scale != 1 {
		p("")
		p("**Trial run at -scale %g: job counts and durations are not the benchmark's.**", b.scale)
	}
	if len(b.errs) > 0 {
		p("")
		p("**Failures:**")
		for _, e := range b.errs {
			p("- %v", e)
		}
	}
	p("")
	p("Every figure is measured beside its baseline in the same run, on the same Redis and sandbox. The machine is shared: " +
		"read the ratios, not the absolute rates.")
	p("")
	p("## Summary")
	p("")
	p("| # | what | wabulk | baseline (same run) | ratio | target | |")
	p("| --- | --- | --- | --- | --- | --- | --- |")
	if t := b.res.tput; t != nil {
		p("| 1 | worker throughput, %d jobs, concurrency %d, zero-latency sandbox, WABULK_RATE=1e6 (does not bind) | %.0f sends/s | bare asynq handler %.0f sends/s | %.3f | ≥ 0.85 | %s |",
			t.jobs, t.conc, t.wabulk, t.bare, t.ratio, yes(t.ratio >= 0.85))
	}
	for _, r := range b.res.rate {
		limit := int(r.rate) + r.burst
		ratio := r.achieved / r.rate
		p("| 2 | rate %g/s (burst %d), 3 `wabulk worker` processes × concurrency %d, %d jobs, sandbox 100 ± 50 ms: achieved rate, steady window (%.1f s) | %.1f/s | configured %g/s | %.4f | 0.97–1.00 | %s |",
			r.rate, r.burst, r.conc, r.jobs, r.window.Seconds(), r.achieved, r.rate, ratio, yes(rateOK(ratio)))
		p("| 2 | rate %g/s: most sends in any 1 s window | %d | rate + burst = %d | %.3f | ≤ %d | %s |",
			r.rate, r.maxWindow, limit, float64(r.maxWindow)/float64(limit), limit, yes(r.maxWindow <= limit))
		bare := ""
		if t := b.res.tput; t != nil {
			bare = fmt.Sprintf("bare asynq handler: %.1f commands/message (§1)", t.bCmds)
		}
		p("| 2 | rate %g/s: Redis commands per message | %.2f sent by clients, of which the limiter's EVALSHA %.3f; %.1f processed incl. inside scripts | %s | limiter %.3f of 1 per message | — | |",
			r.rate, r.clientPerMsg, r.limiterPerMsg, r.serverPerMsg, bare, r.limiterPerMsg)
	}
	if e := b.res.enq; e != nil {
		p("| 3 | `wabulk enqueue` of a %d-row CSV (%.0f MB), concurrency %d | %.0f rows/s (%v) | bare asynq Enqueue loop, same payload bytes and TaskIDs: %.0f rows/s (%v) | %.3f | ≥ 0.9 | %s |",
			e.rows, float64(e.fileBytes)/1e6, e.conc, e.ours, e.elapsed.Round(100*time.Millisecond), e.bare, e.bareElapsed.Round(100*time.Millisecond), e.ratio, yes(e.ratio >= 0.9))
		p("| 3 | peak RSS of `wabulk enqueue` (VmHWM from /proc, sampled every 20 ms) | %s | limit 64 MiB | %.2f of the limit | ≤ 64 MiB | %s |",
			mib(e.peakKiB), float64(e.peakKiB)/(64*1024), yes(e.peakKiB <= 64*1024))
	}
	if len(b.res.lat) == 2 {
		bare, ours := b.res.lat[0], b.res.lat[1]
		p("| 4 | enqueue → Kaleyra call latency at half capacity (%.0f/s), p50 / p99 | %v / %v | bare asynq handler, same rate and poll: %v / %v | p99 %.2f× | p99 ≤ 1.5 s | %s |",
			ours.achieved, ms(ours.p50), ms(ours.p99), ms(bare.p50), ms(bare.p99), float64(ours.p99)/float64(bare.p99), yes(ours.p99 <= 1500*time.Millisecond))
	}
	if len(b.res.mem) == 2 {
		lo, hi := b.res.mem[0], b.res.mem[1]
		p("| 5 | `wabulk worker` RSS under load (sandbox 200 ± 50 ms), highest VmRSS sampled | c=%d: %s (%.0f sends/s) · c=%d: %s (%.0f sends/s) | c=%d | c%d/c%d %.2f×, %.1f KiB per extra slot | — | |",
			lo.conc, mib(lo.maxRSS), lo.rate, hi.conc, mib(hi.maxRSS), hi.rate, lo.conc, hi.conc, lo.conc,
			float64(hi.maxRSS)/float64(lo.maxRSS), float64(hi.maxRSS-lo.maxRSS)/float64(hi.conc-lo.conc))
	}
	if pr := b.res.prof; pr != nil {
		p("| 6 | CPU profile of the in-process worker, %d jobs at %.0f sends/s | see §6 | | | | |", pr.jobs, pr.rate)
	}

	if t := b.res.tput; t != nil {
		p("")
		p("## 1. Worker throughput")
		p("")
		p("The real `worker` package (`worker.Run`, zap JSON log to a file, ledger, shared limiter at WABULK_RATE=1e6 so it " +
			"never binds, Kaleyra client) against a bare `asynq.NewServer` + `HandlerFunc` that POSTs the task payload — the exact " +
			"bytes `kaleyra.Body` gives for the job — with the same headers via `net/http`. Same sandbox (zero latency), concurrency " +
			"50, TaskCheckInterval 200 ms, DelayedTaskCheckInterval 1 s, tasks enqueued beforehand with the same TaskIDs, MaxRetry " +
			"and Retention. Rate = calls from the first to the N-th arrival at the sandbox. After a quarter-size warm-up run of each side (not counted), runs in ABBA order twice:")
		p("")
		p("| run | side | sends/s | Redis commands / message | CPU µs / message, bench process | CPU µs / message, redis-server |")
		p("| --- | --- | --- | --- | --- | --- |")
		for i, r := range t.runs {
			p("| %d | %s | %.0f | %.1f | %.0f | %.0f |", i+1, r.side, r.rate, r.cmdsPer, r.cpuUS, r.redisUS)
		}
		p("")
		p("Mean: wabulk %.0f, bare %.0f sends/s, **ratio %.3f**. CPU per message (bench process = worker or bare handler + sandbox "+
			"+ Redis clients): wabulk %.0f µs, bare %.0f µs; redis-server: wabulk %.0f µs, bare %.0f µs.",
			t.wabulk, t.bare, t.ratio, t.wCPU, t.bCPU, t.wRedis, t.bRed)
		p("")
		p("Redis commands per 1,000 messages by command (last run of each side; scripts' inner commands included):")
		p("")
		p("| command | wabulk | bare |")
		p("| --- | --- | --- |")
		keys := slices.Sorted(maps.Keys(mergeKeys(t.wTop, t.bTop)))
		slices.SortStableFunc(keys, func(a, c string) int { return int(t.wTop[c]+t.bTop[c]) - int(t.wTop[a]+t.bTop[a]) })
		for _, k := range keys {
			if t.wTop[k]+t.bTop[k] < 5 {
				continue
			}
			p("| %s | %d | %d |", k, t.wTop[k], t.bTop[k])
		}
		b.notes(&w, "throughput")
	}

	if len(b.res.rate) > 0 {
		p("")
		p("## 2. Rate accuracy")
		p("")
		p("Three `wabulk worker` processes (the binary, WABULK_CONCURRENCY=50 each, default burst ceil(rate/10)) share sender %s; "+
			"all jobs are enqueued before they start, so demand exceeds the rate throughout. The sandbox answers in 100 ms ± 50 ms. "+
			"Figures from the sandbox's call log (arrival times). Steady window: 1 s after the first call to 1 s before the last. "+
			"Redis commands: MONITOR counts what clients sent (the limiter's EVALSHA told apart by its `:rl:{` key), "+
			"INFO total_commands_processed counts inner script commands too. Achieved rate: (k−1) intervals between the k calls "+
			"of the window over the time from its first to its last; the 0.97–1.00 target is judged at the 4 decimals shown.", sender)
		p("")
		p("| rate | jobs | achieved (steady) | achieved / configured | max in 1 s | rate + burst | client commands / msg | limiter EVALSHA / msg | commands incl. scripts / msg | peak RSS per process |")
		p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, r := range b.res.rate {
			var rss []string
			for _, k := range r.rssKiB {
				rss = append(rss, mib(k))
			}
			p("| %g | %d | %.1f/s over %.1f s | %.4f | %d | %d | %.2f | %.3f | %.1f | %s |", r.rate, r.jobs, r.achieved, r.window.Seconds(),
				r.achieved/r.rate, r.maxWindow, int(r.rate)+r.burst, r.clientPerMsg, r.limiterPerMsg, r.serverPerMsg, strings.Join(rss, ", "))
		}
		if len(b.res.rate) > 1 {
			p("")
			p("Rate 80 uses %d jobs (30 s at 80/s) instead of 10,000 to fit the 10-minute budget.", b.res.rate[1].jobs)
		}
		b.notes(&w, "rate")
	}

	if e := b.res.enq; e != nil {
		p("")
		p("## 3. Enqueue")
		p("")
		p("A generated %d-row CSV (`to,type,media_link,ref`, sender from KALEYRA_FROM) through the built binary: `wabulk enqueue FILE` "+
			"(process start to exit; peak RSS = VmHWM of /proc/<pid>/status sampled every 20 ms — wait4's ru_maxrss would include the "+
			"benchmark's own memory, which Linux carries into a vforked child). Baseline: %d goroutines calling `asynq.Client.Enqueue` with the "+
			"same payload bytes, TaskIDs and options, made beforehand (checked identical to what `wabulk enqueue` stored: %v); half the rows "+
			"before `wabulk enqueue` and half after, each run starting on an empty Redis. `wabulk enqueue` printed `%s`. "+
			"The baseline makes one Redis call per row, as asynq's client does; `wabulk enqueue`'s %d goroutines each validate up "+
			"to 64 rows and enqueue them with one script call in asynq's own task layout (producer/asynqtask.go), so Redis does "+
			"less per row and the validation it adds runs on the core Redis leaves free.",
			e.rows, e.conc, e.sameBytes, e.summary, e.conc)
		p("")
		p("| | rows/s | time | peak RSS |")
		p("| --- | --- | --- | --- |")
		p("| bare asynq loop | %.0f | %v | (bench process) |", e.bare, e.bareElapsed.Round(100*time.Millisecond))
		p("| `wabulk enqueue` | %.0f | %v | %s |", e.ours, e.elapsed.Round(100*time.Millisecond), mib(e.peakKiB))
		p("| ratio | %.3f | | |", e.ratio)
		b.notes(&w, "enqueue")
	}

	if len(b.res.lat) > 0 {
		p("")
		p("## 4. Latency")
		p("")
		p("Jobs enqueued at a steady rate — half the worker capacity measured in §1 — by 4 pacing goroutines for %v; latency = "+
			"the sandbox's arrival time of the Kaleyra call minus the time just before the enqueue call (joined on the recipient). "+
			"wabulk: `producer.Send` (validation, ledger count) to the in-process worker; bare: `asynq.Client.Enqueue` of the "+
			"request body to the bare handler. Both at concurrency 50, poll interval 200 ms (asynq sleeps 100–300 ms when it finds the queue empty).", b.latDur)
		p("")
		p("| side | rate asked | achieved | jobs | p50 | p90 | p99 | max |")
		p("| --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, r := range b.res.lat {
			p("| %s | %.0f/s | %.0f/s | %d | %s | %s | %s | %s |", r.side, r.target, r.achieved, r.jobs, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max))
		}
		b.notes(&w, "latency")
	}

	if len(b.res.mem) > 0 {
		p("")
		p("## 5. Memory")
		p("")
		p("One `wabulk worker` process at WABULK_RATE=1e6, %d jobs queued, sandbox answering in 200 ± 50 ms so that the slots are "+
			"busy; /proc/<pid>/status sampled every 100 ms for %v after the first call.", b.memJobs, b.memDur)
		p("")
		p("| concurrency | sends/s | highest VmRSS | VmHWM at end of load | VmHWM incl. shutdown |")
		p("| --- | --- | --- | --- | --- |")
		for _, r := range b.res.mem {
			p("| %d | %.0f | %s | %s | %s |", r.conc, r.rate, mib(r.maxRSS), mib(r.hwm), mib(r.peak))
		}
		b.notes(&w, "memory")
	}

	if pr := b.res.prof; pr != nil {
		p("")
		p("## 6. Where the worker's time goes")
		p("")
		p("CPU profile (runtime/pprof, in process) of the worker running %d jobs at %.0f sends/s against the zero-latency sandbox. "+
			"The worker's goroutines carry the label role=worker, the sandbox's role=sandbox; GC and runtime work carry none. "+
			"Tables: `go tool pprof -top [-cum] -tagfocus=role=worker`.", pr.jobs, pr.rate)
		p("")
		p("Samples by label:")
		p("")
		p("```")
		w.WriteString(pr.tags)
		p("```")
		p("")
		p("Top, flat (%s):", pr.totalLine)
		p("")
		p("```")
		for _, l := range pr.flat {
			p("%s", l)
		}
		p("```")
		p("")
		p("Top, cumulative:")
		p("")
		p("```")
		for _, l := range pr.cum {
			p("%s", l)
		}
		p("```")
		p("")
		p("wabulk's own functions, by cumulative time:")
		p("")
		p("```")
		for _, l := range pr.own {
			p("%s", l)
		}
		p("```")
		b.notes(&w, "profile")
	}
	p("")
	p("## Phase times and machine load")
	p("")
	p("Load average (1, 5, 15 min) at the start and end of each phase: other work on this shared machine competes for the same %d cores.", m.cores)
	p("")
	for _, k := range slices.Sorted(maps.Keys(b.res.phaseDur)) {
		p("- %s: %v, load %s", k, b.res.phaseDur[k].Round(100*time.Millisecond), b.res.phaseLA[k])
	}
	return w.String()
}

func mergeKeys(a, c map[string]int64) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range c {
		m[k] = true
	}
	return m
}
