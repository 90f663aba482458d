package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// manySummary writes §10's rows of the summary table.
func (b *bench) manySummary(w *strings.Builder) {
	m := b.res.many
	if m == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	if len(m.burst) > 0 {
		one, each := m.burstSide(true), m.burstSide(false)
		r := m.burstRatio()
		p("| 10 | a. %d single messages posted without a campaign (a campaign and a lane each), %d in flight, one `wabulk worker` × concurrency %d, rate not binding: sent per second, first post to last call | %.0f msgs/s; %.1f Redis commands/msg (to the lanes' retirement); worker CPU %.0f µs/msg | the same posts naming one campaign: %.0f msgs/s; %.1f commands/msg; %.0f µs/msg | %.3f | ≥ %.2f | %s |",
			m.msgs, manyPosters, manyConc, each.sendRate, each.cmdsAll, each.workerUS, one.sendRate, one.cmdsAll, one.workerUS, r, targetManyRatio, yes(r >= targetManyRatio))
	}
	if len(m.trickle) == 2 {
		each, one := m.trickle[0], m.trickle[1]
		p("| 10 | b. POST /v1/messages at %g/s for %.0f s without a campaign (%d lanes), %d workers: post → Kaleyra call p50 / p99 | %s / %s | naming one campaign: %s / %s | p99 %.2f× | p99 ≤ %s | %s |",
			trickleRate, float64(each.msgs)/trickleRate, each.msgs, each.workers, ms(each.p50), ms(each.p99), ms(one.p50), ms(one.p99),
			float64(each.p99)/float64(one.p99), ms(targetTrickleP99), yes(each.p99 <= targetTrickleP99))
		p("| 10 | b. same: Redis commands processed per message, first post to the lanes' retirement | %.1f | naming one campaign: %.1f | %.2f× | ≤ %g | %s |",
			each.cmdsAll, one.cmdsAll, each.cmdsAll/one.cmdsAll, targetTrickleCmds, yes(each.cmdsAll <= targetTrickleCmds))
	}
	if tot, cl, ok := m.perLane(); ok {
		zero, many := m.idle[0], m.idle[1]
		p("| 10 | c. %d live lanes with nothing due, %d workers, window %v (%.2f sweeps, %.2f retirement checks per lane in it): Redis commands per lane per second, all workers | %.3f processed (inside scripts included); %.3f sent by clients | the same workers with no lane: %.1f commands/s processed, %.1f sent | | ≤ %g processed | %s |",
			many.lanes, manyWorkers, many.dur, m.passes("pending,retry"), m.passes("pending,active"), tot, cl, zero.cmdsPerSec, zero.clientPerSec,
			idleBound, yes(tot <= idleBound))
	}
	if len(m.firstMany) > 0 && len(m.firstBase) > 0 {
		med, base := median(m.firstMany), median(m.firstBase)
		p("| 10 | d. a new campaign's first send (post without a campaign → call) with %d live lanes, %d workers, %d campaigns one at a time: median / max | %s / %s | no other live lane: %s / %s | median %.2f× | median ≤ %s | %s |",
			m.idleN, manyWorkers, len(m.firstMany), ms(med), ms(maxDur(m.firstMany)), ms(base), ms(maxDur(m.firstBase)),
			float64(med)/float64(base), ms(targetFirstSend), yes(med <= targetFirstSend))
	}
}

// manyReport writes §10.
func (b *bench) manyReport(w *strings.Builder) {
	m := b.res.many
	if m == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("")
	p("## 10. Many lanes")
	p("")
	p("POST /v1/messages without a campaign makes one campaign (msg-<hash> of the message's content) per distinct message, so "+
		"a client posting single messages makes a lane per message. `wabulk serve`'s API (httpapi, in the benchmark process on a "+
		"loopback port, bearer token, a fresh one per run) takes the posts; `wabulk worker` processes of the built binary "+
		"(WABULK_CONCURRENCY=%d, WABULK_RATE=1e6 so the limiter runs but does not bind) send them to a zero-latency sandbox. "+
		"Each post is an image to its own recipient with its own ref (so its own campaign when it names none). Latency: from "+
		"just before the post to the sandbox's arrival time of its call. Redis commands: INFO total_commands_processed "+
		"(commands inside scripts included), from just before the first post to 1 s after the last call, and to the moment no "+
		"lane is live any more (every lane found empty twice and retired by the upkeep), which adds each lane's retirement to "+
		"its message's cost. CPU: /proc/<pid>/stat of the workers, the benchmark process (API, posters, sandbox) and "+
		"redis-server, to 1 s after the last call. Redis is flushed and the workers started afresh for each run. Run alone "+
		"with `%s`.", manyConc, b.aloneCmd("10"))
	runs := func(rs []postRun) {
		p("")
		p("| run | posts | posts/s | sent/s | p50 | p99 | max | p50 of the first / last tenth of the posts | live lanes at the last call | commands/msg to last call + 1 s | to retirement (after the last call) | CPU µs/msg: workers, bench process, redis-server | outcomes; NOSCRIPT answers |")
		p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		for i, r := range rs {
			p("| %d | %d, %s, %d worker(s) | %.0f | %.0f | %s | %s | %s | %s / %s | %d | %.1f | %.1f (%s) | %.0f, %.0f, %.0f | %v; %d |", i+1, r.msgs, r.side(), r.workers,
				r.postRate, r.sendRate, ms(r.p50), ms(r.p99), ms(r.max), ms(r.firstP50), ms(r.lastP50), r.lanes, r.cmdsSent, r.cmdsAll, retiredText(r),
				r.workerUS, r.benchUS, r.redisUS, r.outcomes, r.noscript)
		}
		var one, each map[string]float64
		for _, r := range rs {
			if r.one {
				one = r.top
			} else {
				each = r.top
			}
		}
		apiEach, apiOne := m.apiSide(false).top, m.apiSide(true).top
		p("")
		p("Redis commands per message by command, to retirement (the last run of each side; inside scripts included), and " +
			"the API's share of them (the same posts with no worker running, a.):")
		p("")
		p("| command | a campaign each | of which the API | one campaign | of which the API |")
		p("| --- | --- | --- | --- | --- |")
		keys := slices.Sorted(maps.Keys(mergeKeys(each, one)))
		slices.SortStableFunc(keys, func(x, y string) int {
			switch {
			case each[x] > each[y]:
				return -1
			case each[x] < each[y]:
				return 1
			}
			return 0
		})
		for _, k := range keys {
			if each[k]+one[k] < 0.05 {
				continue
			}
			p("| %s | %.2f | %.2f | %.2f | %.2f |", k, each[k], apiEach[k], one[k], apiOne[k])
		}
	}
	if len(m.burst) > 0 {
		one, each := m.burstSide(true), m.burstSide(false)
		p("")
		p("**a. A burst of one-message campaigns.** %d posts, %d in flight, one worker; runs in ABBA order (one campaign, a "+
			"campaign each, a campaign each, one campaign). Send rate = messages ÷ (last call's arrival − first post).", m.msgs, manyPosters)
		runs(m.burst)
		p("")
		p("The API alone (the same posts, %d in flight, no worker running; Redis flushed before each):", manyPosters)
		p("")
		p("| side | posts/s | Redis commands processed / post | sent by the API / post | scripts / post, by keys | bench process CPU µs / post |")
		p("| --- | --- | --- | --- | --- | --- |")
		for _, a := range m.api {
			p("| %s | %.0f | %.1f | %.1f | %s | %.0f |", postSide(a.one), a.rate, a.cmdsPer, a.clientPer, topList(a.scripts, 8, "%.2f"), a.benchUS)
		}
		p("")
		p("Mean: a campaign each **%.0f msgs/s**, one campaign %.0f msgs/s, **ratio %.3f** (target ≥ %.2f: %s). Per message, a "+
			"campaign each against one: %.1f against %.1f Redis commands to the last call, %.1f against %.1f to retirement; worker "+
			"CPU %.0f against %.0f µs; redis-server %.0f against %.0f µs; the benchmark process (API, posters, sandbox) %.0f against %.0f µs.",
			each.sendRate, one.sendRate, m.burstRatio(), targetManyRatio, yes(m.burstRatio() >= targetManyRatio), each.cmdsSent, one.cmdsSent,
			each.cmdsAll, one.cmdsAll, each.workerUS, one.workerUS, each.redisUS, one.redisUS, each.benchUS, one.benchUS)
	}
	if len(m.trickle) == 2 {
		each := m.trickle[0]
		p("")
		p("**b. A steady trickle of single messages.** Posts at %g/s (4 pacing goroutines) for %.0f s, %d workers; without a campaign "+
			"(a lane each), then naming one campaign.", trickleRate, float64(each.msgs)/trickleRate, each.workers)
		runs(m.trickle)
		p("")
		p("A campaign each: p50 %s, **p99 %s** (target ≤ %s: %s), **%.1f Redis commands per message** to the lanes' retirement "+
			"(target ≤ %g: %s), %.1f to the last call.", ms(each.p50), ms(each.p99), ms(targetTrickleP99), yes(each.p99 <= targetTrickleP99),
			each.cmdsAll, targetTrickleCmds, yes(each.cmdsAll <= targetTrickleCmds), each.cmdsSent)
	}
	if len(m.idle) == 2 {
		zero, many := m.idle[0], m.idle[1]
		p("")
		p("**c. Idle lanes.** %d lanes of one sender (%d campaigns), each holding one task scheduled an hour ahead (asynq.Client "+
			"with ProcessIn into the lane, then `RegisterLane` as the producer does): live, nothing due. %d workers started; "+
			"after %v (the startup's takes over, each lane's retirement check pushed out by the minute's sweep) Redis measured for %v: "+
			"commands processed (INFO), commands clients sent (MONITOR; script-internal ones left out), the workers' CPU and "+
			"VmRSS (summed), connected_clients (the benchmark's own INFO and MONITOR connections included). Baseline: the same "+
			"workers with no lane, %v.", many.lanes, many.lanes, manyWorkers, m.warm, many.dur, zero.dur)
		p("")
		p("| run | window | commands processed / s | client commands / s | workers' CPU s/s | workers' VmRSS | connected_clients | NOSCRIPT answers |")
		p("| --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, r := range m.idle {
			p("| %s | %v | %.1f | %.1f | %.4f | %s | %d | %d |", r.what, r.dur, r.cmdsPerSec, r.clientPerSec, r.cpuPerSec, mib(r.rssKiB), r.clients, r.noscript)
		}
		if tot, cl, ok := m.perLane(); ok {
			p("")
			p("Per idle lane ((%d lanes − 0 lanes) / %d): **%.3f commands/s processed** (target ≤ %g: %s), %.3f commands/s sent by "+
				"clients. The window held, per lane, %.2f sweeps (one script each), %.2f retirement checks (`Backlog`, one script "+
				"each) and %.2f reconciler reads (one script each). Over the first %v after the workers' start: %.3f commands/s "+
				"processed per lane. By command and by script, per idle lane per second:", many.lanes, many.lanes, tot, idleBound,
				yes(tot <= idleBound), cl, m.passes("pending,retry"), m.passes("pending,active"), m.passes("reconcile,archived"), m.warm,
				(m.warmPerSec-zero.cmdsPerSec)/float64(m.idleN))
			p("")
			for _, t := range m.idleTop(10) {
				p("- %s", t)
			}
		}
	}
	if len(m.firstMany) > 0 {
		p("")
		p("**d. A new campaign's first send.** After each window of c., %d posts without a campaign, one at a time (each "+
			"waits for the previous one's call, then 200 ms): from just before the post to its call's arrival.", len(m.firstMany))
		p("")
		p("| live lanes | median | max | each |")
		p("| --- | --- | --- | --- |")
		for _, x := range []struct {
			n   int
			lat []time.Duration
		}{{0, m.firstBase}, {m.idleN, m.firstMany}} {
			var each []string
			for _, d := range x.lat {
				each = append(each, fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)))
			}
			p("| %d | %s | %s | %s ms |", x.n, ms(median(x.lat)), ms(maxDur(x.lat)), strings.Join(each, ", "))
		}
	}
	if len(m.warnings) > 0 {
		p("")
		p("Worker log warnings (c., d.): %s.", strings.Join(m.warnings, "; "))
	}
	b.notes(w, "many")
}

// manyNotes writes, under §10, what each missed target means, from this run's figures.
func (b *bench) manyNotes(w *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := b.res.many
	apiOne, apiEach := m.apiSide(true), m.apiSide(false)
	if n := m.noscript(); n > 0 {
		p("")
		p("**The upkeep's sweep did not run in a. and b.: Redis answered NOSCRIPT %d times.** `Ledger.Sweep` "+
			"(internal/store/dispatch.go) runs its script with `Script.Run` on a pipeline, which sends EVALSHA only (go-redis "+
			"falls back to EVAL on NOSCRIPT for a single call, not inside a pipeline), and nothing loads the script beforehand, "+
			"so on a Redis that has not seen it every pass fails at its first batch (the worker logs `sweep lanes … NOSCRIPT`): "+
			"expired completed tasks are not deleted, missing due entries not written, lanes with lost wake-ups not announced "+
			"again. *Fix:* as `Ledger.Apply` does for its pipelined script: on NOSCRIPT, `sweepScript.Load` and run the batch "+
			"again. For c. the benchmark loads it itself (SCRIPT LOAD of its source), so c. measures the sweep as designed.", n)
	}
	if len(m.burst) > 0 {
		one, each := m.burstSide(true), m.burstSide(false)
		r := m.burstRatio()
		cpuOne, cpuEach := one.workerUS+one.benchUS+one.redisUS, each.workerUS+each.benchUS+each.redisUS
		p("")
		if r >= targetManyRatio {
			p("a. Target met: ratio %.3f.", r)
		} else {
			p("**a. Missed: ratio %.3f against ≥ %.2f.** Workers, API, sandbox and redis-server share %d cores, so the send rate "+
				"follows the CPU each message costs all of them: %.0f µs with a campaign each against %.0f µs with one (%.2f×; "+
				"workers %.0f against %.0f, redis-server %.0f against %.0f, benchmark process %.0f against %.0f). The API "+
				"alone, with no worker, already answers %.2f× the posts with a campaign each (%.0f against %.0f posts/s).",
				r, targetManyRatio, b.machine.cores, cpuEach, cpuOne, cpuOne/cpuEach, each.workerUS, one.workerUS, each.redisUS,
				one.redisUS, each.benchUS, one.benchUS, apiEach.rate/apiOne.rate, apiEach.rate, apiOne.rate)
		}
		p("")
		p("Where a message's %.1f Redis commands go with a campaign each (%.1f with one), to its lane's retirement:", each.cmdsAll, one.cmdsAll)
		p("")
		p("- the API, %.1f per post (%.1f with one campaign; alone it answers %.0f posts/s against %.0f): a new campaign's lane is "+
			"declared and then registered, one registration script each (`lanes,campaigns` above), besides the enqueue script "+
			"(an answer reads the campaign's state hash, %.0f HGETALL per post in the table);", apiEach.cmdsPer, apiOne.cmdsPer,
			apiEach.rate, apiOne.rate, apiEach.top["hgetall"])
		p("- the workers and the upkeep until the last call, %.1f (%.1f with one campaign): per message the take, the "+
			"suppression check, the sent marker and the completion, each with the commands inside its script;",
			each.cmdsSent-apiEach.cmdsPer, one.cmdsSent-apiOne.cmdsPer)
		p("- each lane's retirement after the last call, %.1f (%.1f with one campaign): the upkeep finds the lane empty at two "+
			"`Backlog` checks 10 s apart, then `RetireDrained` runs DEL of its live flag, `Backlog`, MULTI/SREM/ZADD/EXEC and "+
			"`Backlog` again — 4 scripts of 5 commands and 5 more, for one message.", each.cmdsAll-each.cmdsSent, one.cmdsAll-one.cmdsSent)
		if r < targetManyRatio {
			p("")
			p("*What would close it* (internal/httpapi, worker/, internal/store; not changed here): answer POST /v1/messages " +
				"with the campaign's state alone (one HMGET of its state hash; for a new lane the registration script already " +
				"returns paused, cancelled_at and send_at) instead of `Ledger.Campaign`'s counts, about 20 commands and their CPU " +
				"off every post on both sides; and retire a lane when a take finds it empty (a script that checks the backlog and " +
				"clears the live flag, keeping the producer's flag protocol) instead of two checks 10 s apart and four `Backlog` " +
				"calls: now that a registration is announced on PubSub, a retired lane that gets a message again is served at " +
				"once, so keeping it live no longer buys latency.")
		}
	}
	if len(m.burst) > 0 {
		var e, o postRun
		for _, x := range m.burst {
			if x.one {
				o = x
			} else {
				e = x
			}
		}
		p("")
		p("Latency in a. (not a target; last run of each side): p99 %s with a campaign each against %s with one; the first "+
			"tenth of the posts waited %s (p50), the last tenth %s (with one campaign %s and %s). While posts arrive faster "+
			"than the sender sends, each lane that gets work is put at the head of its sender's round (so that a new "+
			"campaign's first send does not wait for the round, d.): the newest lanes go first and the oldest wait until the "+
			"arrivals stop. Bounding how long a lane may be overtaken (say, new lanes go to the head only while the "+
			"longest-waiting lane of the round has waited less than a second) would keep d. and cap the wait.",
			ms(e.p99), ms(o.p99), ms(e.firstP50), ms(e.lastP50), ms(o.firstP50), ms(o.lastP50))
	}
	if len(m.trickle) == 2 {
		each, one := m.trickle[0], m.trickle[1]
		p("")
		if each.p99 <= targetTrickleP99 {
			p("b. Latency target met: p99 %s (one campaign %s). A post's registration or enqueue announces the lane, and the "+
				"sender's loop takes from it at once.", ms(each.p99), ms(one.p99))
		} else {
			p("**b. Latency missed: p99 %s against ≤ %s.**", ms(each.p99), ms(targetTrickleP99))
		}
		if each.cmdsAll > targetTrickleCmds {
			p("")
			retire := ""
			if len(m.burst) > 0 {
				e := m.burstSide(false)
				retire = fmt.Sprintf(" (a. measured it apart: %.1f per one-message lane)", e.cmdsAll-e.cmdsSent)
			}
			p("**b. Commands missed: %.1f per message against ≤ %g** (%.1f with one campaign, so the target is missed on both "+
				"sides). The API alone takes %.1f per post with a campaign each (%.1f with one, a.); the workers and the upkeep "+
				"the rest, %.1f (%.1f with one), the lanes' retirement included: most lanes retired during the run%s. At %g "+
				"posts/s little is shared: a message's ledger writes mostly go in a pipeline of their own, and each announcement "+
				"wakes each of the %d workers (one takes the task, the others run a take that finds the lane empty). Besides a.'s "+
				"remedies (about 20 off the API's share, most of the retirement's), waking one worker per announcement would "+
				"take the other's takes off.", each.cmdsAll, targetTrickleCmds, one.cmdsAll, apiEach.cmdsPer, apiOne.cmdsPer,
				each.cmdsAll-apiEach.cmdsPer, one.cmdsAll-apiOne.cmdsPer, retire, trickleRate, each.workers)
		}
	}
	if tot, cl, ok := m.perLane(); ok {
		many := m.idle[1]
		p("")
		if tot <= idleBound {
			p("c. Target met: %.3f commands per idle lane per second processed (%.3f sent by clients).", tot, cl)
		} else {
			perPass := func(keys string) float64 {
				if n := m.passes(keys); n > 0 {
					return n / many.dur.Seconds()
				}
				return 0
			}
			p("**c. Missed: %.3f commands per idle lane per second processed, against ≤ %g** (%.3f sent by clients, which "+
				"is within it: each script call counts once there, with the commands it runs inside on Redis's side). Per lane "+
				"per second in the window: sweeps %.4f, retirement checks %.4f, reconciler reads %.4f (script calls, each with its "+
				"inner commands: the sweep's ZRANGEBYSCORE, 2 ZRANGE and LLEN, then a ZADD LT of the due entry; `Backlog`'s 2 "+
				"LLEN and 2 ZCARD; the reconciler's GET and ZRANGEBYSCORE). The lane has a scheduled task, so the upkeep keeps "+
				"checking it for retirement every 30 s, reading the same keys the sweep reads.", tot, idleBound, cl,
				perPass("pending,retry"), perPass("pending,active"), perPass("reconcile,archived"))
			p("")
			p("*What would close it:* let the sweep's reply (pending count, earliest retry or scheduled task) stand for the " +
				"retirement check of the lanes it visits — a lane with a due entry has a backlog — and run `Backlog` only for " +
				"lanes without one; have the reconciler visit only lanes with archived tasks (an index written by ArchiveTask, as " +
				"the due index is by RetryTask) instead of every live lane each pass; write the due entry only when the sweep " +
				"finds it missing. The sweep alone, one script of 5 commands per lane every 30 s, is 0.17.")
		}
	}
	if len(m.firstMany) > 0 && len(m.firstBase) > 0 {
		med := median(m.firstMany)
		p("")
		if med <= targetFirstSend {
			p("d. Target met: median %s, max %s with %d live lanes (%s / %s with none): the registration announces the lane "+
				"and its sender's loop puts it at the head of its round; the other lanes, set aside, cost the loop nothing.",
				ms(med), ms(maxDur(m.firstMany)), m.idleN, ms(median(m.firstBase)), ms(maxDur(m.firstBase)))
		} else {
			p("**d. Missed: median %s against ≤ %s.**", ms(med), ms(targetFirstSend))
		}
	}
}
