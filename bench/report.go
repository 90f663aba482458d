package main

import (
	"fmt"
	"maps"
	"math"
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
		p("| 1 | worker throughput, %d jobs, concurrency %d, zero-latency sandbox, WABULK_RATE=1e6 (does not bind) | %.0f sends/s | bare asynq handler %.0f sends/s | %.3f | ≥ %.2f | %s |",
			t.jobs, t.conc, t.wabulk, t.bare, t.ratio, targetTputRatio, yes(t.ratio >= targetTputRatio))
		cpu := (t.wCPU + t.wRedis) / (t.bCPU + t.bRed)
		p("| 1 | CPU per message, bench process + redis-server | %.0f µs | bare: %.0f µs | %.2f× | ≤ %.2f× | %s |",
			t.wCPU+t.wRedis, t.bCPU+t.bRed, cpu, targetCPURatio, yes(cpu <= targetCPURatio))
		p("| 1 | Redis commands processed per message (scripts' inner commands included) | %.1f | bare: %.1f | %.2f× | ≤ %g | %s |",
			t.wCmds, t.bCmds, t.wCmds/t.bCmds, targetCmds, yes(t.wCmds <= targetCmds))
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
		p("| 3 | `wabulk enqueue` of a %d-row CSV (%.0f MB), concurrency %d | %.0f rows/s (%v) | bare asynq Enqueue loop, same payload bytes and TaskIDs: %.0f rows/s (%v) | %.3f | ≥ %g | %s |",
			e.rows, float64(e.fileBytes)/1e6, e.conc, e.ours, e.elapsed.Round(100*time.Millisecond), e.bare, e.bareElapsed.Round(100*time.Millisecond), e.ratio, targetEnqRatio, yes(e.ratio >= targetEnqRatio))
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
	if m := b.res.redisMem; m != nil {
		p("| 9 | Redis memory per pending job (used_memory delta ÷ jobs, %d-row campaign) | %.0f B | bare asynq, request body as payload: %.0f B | %.2f× | ≤ %d B | %s |",
			m.jobs, m.pending, m.pendingBare, m.pending/m.pendingBare, targetPending, yes(m.pending <= targetPending))
		p("| 9 | Redis memory per finished job kept for WABULK_RETENTION (task, result, wabulk's records) | %.0f B | bare asynq keeping the answer as result: %.0f B | %.2f× | ≤ %d B | %s |",
			m.done, m.doneBare, m.done/m.doneBare, targetDone, yes(m.done <= targetDone))
	}
	if pr := b.res.prof; pr != nil {
		p("| 6 | CPU profile of the in-process worker, %d jobs at %.0f sends/s | see §6 | | | | |", pr.jobs, pr.rate)
	}
	if l := b.res.lanes; l != nil {
		lowest := math.Inf(1)
		var each []string
		for _, s := range l.senders {
			lowest = min(lowest, s.rate/l.rate)
			each = append(each, fmt.Sprintf("%.2f/s", s.rate))
		}
		p("| 7 | lanes: 3 campaigns on 3 senders at %g/s each, one `wabulk worker` × concurrency %d, rate of each sender while all 3 are busy (%.1f s) | %s (aggregate %.1f/s) | configured %g/s each | lowest %.4f | each ≥ 0.97 | %s |",
			l.rate, l.conc, l.window.Seconds(), strings.Join(each, ", "), l.aggregate, l.rate, lowest, yes(lowest >= 0.97))
		p("| 7 | lanes: %d-job campaign enqueued %v after a %d-job one on the same sender: done after its enqueue | %v (big one %.0f%% done) | fair share 2·size/r = %v; FIFO %v | %.2f× fair, %.2f× FIFO | — | |",
			l.smallJobs, ms(l.smallAt), l.bigJobs, ms(l.smallDone), 100*l.bigDoneFrac, ms(l.fairExpect), ms(l.fifoExpect),
			float64(l.smallDone)/float64(l.fairExpect), float64(l.smallDone)/float64(l.fifoExpect))
	}
	b.callbacksSummary(&w)
	b.manySummary(&w)

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
			"to 64 rows and enqueue them with one script call in asynq's own task layout (internal/store/asynq.go), so Redis does "+
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
		p("wabulk's own functions and its log call, by cumulative time:")
		p("")
		p("```")
		for _, l := range pr.own {
			p("%s", l)
		}
		p("```")
		b.notes(&w, "profile")
	}
	if l := b.res.lanes; l != nil {
		b.lanesReport(&w)
	}
	b.callbacksReport(&w)
	b.manyReport(&w)
	if m := b.res.redisMem; m != nil {
		p("")
		p("## 9. Redis memory per job")
		p("")
		p("%d jobs enqueued on an empty Redis, `INFO memory` used_memory read before and after (pending), then all sent through the "+
			"zero-latency sandbox at concurrency 50 and read again once asynq has completed every task (finished: what stays for "+
			"the retention window). wabulk: the real producer and the in-process worker. Bare: `asynq.Client.Enqueue` of the "+
			"request body with the same TaskIDs and options, and a handler that writes Kaleyra's answer as the task result.", m.jobs)
		p("")
		p("| | pending, B/job | finished, B/job |")
		p("| --- | --- | --- |")
		p("| bare asynq | %.0f | %.0f |", m.pendingBare, m.doneBare)
		p("| wabulk | %.0f | %.0f |", m.pending, m.done)
		p("")
		p("wabulk's finished jobs by key kind (`MEMORY USAGE` of every key, summed per kind, ÷ jobs; allocator overhead and " +
			"Redis's own tables make used_memory's figure larger):")
		p("")
		p("| keys | B/job | keys |")
		p("| --- | --- | --- |")
		for _, pt := range m.parts {
			p("| %s | %.1f | %d |", pt.kind, pt.bytes, pt.keys)
		}
		b.notes(&w, "redismem")
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

// mergeKeys is the set of the keys of a and c.
func mergeKeys[V any](a, c map[string]V) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range c {
		m[k] = true
	}
	return m
}

// lanesReport writes §7.
func (b *bench) lanesReport(w *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	l := b.res.lanes
	cmd := b.aloneCmd("lanes")
	p("")
	p("## 7. Lanes")
	p("")
	p("Every (campaign, sender) pair is its own asynq queue, a lane; each worker runs one dispatch loop per sender that "+
		"takes a rate token, picks the next of the sender's lanes with work by deficit round-robin and takes one task "+
		"(worker/dispatch.go). One `wabulk worker` process (the built binary) at WABULK_RATE=%g, "+
		"WABULK_CONCURRENCY=%d (per sender), against a zero-latency sandbox whose account has the senders; "+
		"campaigns enqueued through the real producer while the worker runs. Figures from the sandbox's call log (arrival "+
		"times) and the worker's JSON log. Run alone with `%s`.", l.rate, l.conc, cmd)
	p("")
	p("**Three senders at once.** Three campaigns on three senders, enqueued one after another, the biggest first: under a "+
		"single FIFO queue its jobs, all waiting for sender 1's rate, would hold every slot and the other two would wait "+
		"behind it. Each sender's rate is (k−1)/(last−first) over its calls in the window where all three are busy "+
		"(from the latest first call to the earliest last call, less 1 s at each end): %.1f s.", l.window.Seconds())
	p("")
	p("| sender | campaign | jobs | enqueued at | first call | last call | rate while all busy | / r | lowest 5 s average |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range l.senders {
		min5 := "— (window under 5 s)"
		if !math.IsNaN(s.min5) {
			min5 = fmt.Sprintf("%.1f/s", s.min5)
		}
		p("| %s | %s | %d | +%s | +%s | +%s | %.2f/s | %.4f | %s |", s.sender, s.campaign, s.jobs, ms(s.enqueued), ms(s.first),
			ms(s.last), s.rate, s.rate/l.rate, min5)
	}
	p("")
	p("Aggregate %.2f/s = %.4f of 3 × %g/s. Worker log: send outcomes %v; duplicate calls (same sender and recipient "+
		"twice): %d.", l.aggregate, l.aggregate/(3*l.rate), l.rate, l.outcomes1, l.dupCalls1)
	p("")
	p("**A small campaign behind a big one, same sender.** %d jobs enqueued, then %v later %d jobs of another campaign on "+
		"the same sender. Done = its last call's arrival after the start of its enqueue call.", l.bigJobs, ms(l.smallAt), l.smallJobs)
	p("")
	p("| | |")
	p("| --- | --- |")
	p("| small campaign's first call after its enqueue | %s |", ms(l.smallFirst))
	p("| small campaign done after its enqueue | **%s** |", ms(l.smallDone))
	p("| fair share (half the sender's rate): 2 × %d / %g | %s |", l.smallJobs, l.rate, ms(l.fairExpect))
	p("| FIFO (the %d big jobs still ahead, then the small ones, at %g/s) | %s |", l.bigJobs-l.bigBefore, l.rate, ms(l.fifoExpect))
	p("| big campaign sent when the small one finished | %.1f%% |", 100*l.bigDoneFrac)
	p("| small campaign's share of the sender's calls while it ran | %.3f |", l.smallShare)
	p("| sender's rate while the small one ran | %.2f/s |", l.senderRate2)
	p("| worker log: send outcomes | %v |", l.outcomes2)
	p("")
	p("What idle lanes cost, and lanes by the thousand, is §10.")
	b.notes(w, "lanes")
}

// aloneCmd is the command that runs one phase alone at this run's scale.
func (b *bench) aloneCmd(phase string) string {
	if b.scale != 1 {
		return fmt.Sprintf("go run ./bench -only %s -scale %g", phase, b.scale)
	}
	return "go run ./bench -only " + phase
}
