package main

import (
	"fmt"
	"strings"
	"time"
)

// notes writes, under a section, what a missed target means — by how much, why, and what would
// close it — from this run's own figures and profile. The reasoning is fixed text; the numbers
// are the run's.
func (b *bench) notes(w *strings.Builder, section string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	switch section {
	case "throughput":
		t := b.res.tput
		ourCPU, bareCPU := t.wCPU+t.wRedis, t.bCPU+t.bRed
		p("")
		if t.ratio >= 0.85 {
			p("Target met.")
			return
		}
		p("**Missed: ratio %.3f against ≥ 0.85** (wabulk would need %.0f%% more sends/s).", t.ratio, (0.85/t.ratio-1)*100)
		p("")
		p("*Why.* Both sides are CPU-bound here: 2 cores shared by the worker, the sandbox and redis-server, with no network wait "+
			"(zero-latency sandbox). So the ratio follows CPU per message: wabulk %.0f µs (bench process) + %.0f µs (redis-server) = %.0f µs, "+
			"bare %.0f + %.0f = %.0f µs; %.0f/%.0f = %.2f, close to the measured ratio. The difference is the work the contract asks of "+
			"the worker and a bare handler does not do:", t.wCPU, t.wRedis, ourCPU, t.bCPU, t.bRed, bareCPU, bareCPU, ourCPU, bareCPU/ourCPU)
		p("")
		p("- **Redis round trips: %.1f commands processed per message vs %.1f** (table above). Per message the bare handler costs asynq's "+
			"dequeue and ack scripts (2 EVALSHA); the worker adds `ledger.Begin` (sent-marker check, active set: 1 EVALSHA), "+
			"`ledger.Sent` (1 EVALSHA) with the task result in the same round trip (1 HSET: DESIGN.md wants Kaleyra's answer as the "+
			"task result) and the limiter's script (`time`/`set` rows: %.3f calls per message at WABULK_RATE=1e6: below the rate "+
			"the limiter pools slots sized to recent arrivals, so most waiters take one without a call). Syscalls for these round "+
			"trips are the largest flat entry of the profile (§6).", t.wCmds, t.bCmds, float64(t.wTop["time"])/1000)
		if pr := b.res.prof; pr != nil {
			p("- **In-process work** (profile, µs of worker CPU per message): %s.", pr.ownSummary())
		}
		p("")
		p("*What would close it:* `job.Decode` in the worker re-runs libphonenumber; a structural E.164 check (digits, length) " +
			"would do on the way out, as the number was validated at enqueue. Kept: payloads in Redis are input too.")
		p("")
		p("Done already: the task result is written in the sent marker's round trip (0.488 → 0.53–0.55), a 2xx answer is " +
			"decoded for WAV2101 only when it names it, and the limiter pools slots below the rate (≈ 0.85 → 0.004 calls per message).")
		p("")
		p("`ledger.Begin`/`Sent` remain: they are what stops a "+
			"second send after a lost ack, so on 2 shared cores a ratio of 0.85 against a handler that writes nothing to Redis is not "+
			"reachable without folding them into asynq's own dequeue/ack scripts. With Kaleyra's real latency (≥ 100 ms) both sides are "+
			"bound by concurrency/latency, not CPU: the measured %.0f sends/s is %.1f× WhatsApp's top tier (1,000/s per sender), at about "+
			"%.2f cores per 1,000 messages/s including redis-server (and the in-process sandbox).", t.wabulk, t.wabulk/1000, ourCPU/1000)
	case "rate":
		for _, r := range b.res.rate {
			ratio := r.achieved / r.rate
			limit := int(r.rate) + r.burst
			if rateOK(ratio) && r.maxWindow <= limit {
				p("")
				p("Rate %g: targets met.", r.rate)
				continue
			}
			p("")
			if ratio < 1 && !rateOK(ratio) {
				p("**Rate %g: achieved %.4f of the configured rate, %.1f%% below the 0.97 floor.**", r.rate, ratio, (0.97-ratio)*100)
			}
			if ratio > 1.0 && !rateOK(ratio) {
				p("**Rate %g: achieved %.4f of the configured rate, above 1.00 by %.2f%%.** The estimate is (k−1) intervals over the "+
					"time from the window's first call to its last, each stamped on arrival at the sandbox: a few ms of jitter on those two "+
					"arrivals moves it by about (jitter / %.0f s); an excess well beyond that would mean the pods together beat the limit.",
					r.rate, ratio, (ratio-1)*100, r.window.Seconds())
			}
			if r.maxWindow > limit {
				p("**Rate %g: %d sends in one 1 s window, %d (%.1f%%) over rate + burst = %d.**", r.rate, r.maxWindow, r.maxWindow-limit,
					float64(r.maxWindow-limit)/float64(limit)*100, limit)
			}
		}
		if b.rateStarved() {
			p("")
			p("*Likely why* (not proven by this run). Load average during this phase: %s, on %d cores: the three workers, the sandbox "+
				"and redis-server competed for CPU with other work. The limiter drops a slot whose waiter wakes later than its grace (so that a stall never releases a backlog), and a "+
				"dropped slot is rate lost for good: late wake-ups lower the achieved rate. The 1 s windows are counted on the sandbox's "+
				"arrival times, which include the HTTP hop and the sandbox's own scheduling on the same starved cores: a stall on the "+
				"receiving side bunches arrivals that left on schedule. *What would close it:* first, to tell the two causes apart, "+
				"the worker could export the limiter's Stats (Unused = slots dropped for late wake-ups) on /metrics, which it does not "+
				"today; then re-run on an otherwise idle machine.", b.res.phaseLA["2. rate accuracy"], b.machine.cores)
		}
	case "enqueue":
		e := b.res.enq
		if e.ratio >= 0.9 && e.peakKiB <= 64*1024 {
			p("")
			p("Targets met.")
			return
		}
		if e.ratio < 0.9 {
			p("")
			p("**Missed: ratio %.3f against ≥ 0.9** (`wabulk enqueue` would need %.0f%% more rows/s). *Why:* the bare loop only enqueues "+
				"prepared bytes; per row `wabulk enqueue` also reads and splits the CSV, validates the number with libphonenumber "+
				"(`job.NormalizeNumber`, the largest CPU cost per row in the producer's own profile, see README § Enqueue), encodes the "+
				"payload and counts the ledger every 500 rows, on the same 2 cores as redis-server (load average during the phase: %s). "+
				"Numbers are already built from their digits (not `phonenumbers.Parse`) and senders checked once per process; what "+
				"is left is libphonenumber's plan check (`IsValidNumber`, ≈ 6 µs), which more cores spread over the 16 enqueue goroutines.",
				e.ratio, (0.9/e.ratio-1)*100, b.res.phaseLA["3. enqueue"])
		}
		if e.peakKiB > 64*1024 {
			p("")
			p("**Missed: peak RSS %s against ≤ 64 MiB.**", mib(e.peakKiB))
		}
	case "latency":
		if len(b.res.lat) < 2 {
			return
		}
		ours := b.res.lat[1]
		p("")
		if ours.p99 <= 1500*time.Millisecond {
			p("Target met (p99 %s ≤ 1,500 ms; the bare handler's %s). The floor is asynq's poll: a processor that finds the queue "+
				"empty sleeps 100–300 ms (TaskCheckInterval 200 ms ± 50%%) before it looks again, so both sides' p99 sits near 300 ms "+
				"while neither falls behind.", ms(ours.p99), ms(b.res.lat[0].p99))
		} else {
			p("**Missed: p99 %s against ≤ 1,500 ms.**", ms(ours.p99))
		}
	case "profile":
		if pr := b.res.prof; pr != nil {
			p("")
			p("wabulk's own hot spots, µs of worker CPU per message (cumulative): %s. Each is explained in §1 (round trips: ledger, "+
				"result, limiter; libphonenumber in `job.Decode`), with what would remove each. Fixed: the task result shares the sent "+
				"marker's round trip, and `ParseAnswer` decodes a 2xx body only when it names WAV2101.", pr.ownSummary())
		}
	}
}

// rateStarved reports a miss of the kind CPU starvation explains: rate too low, window too full.
func (b *bench) rateStarved() bool {
	for _, r := range b.res.rate {
		if ratio := r.achieved / r.rate; (ratio < 1 && !rateOK(ratio)) || r.maxWindow > int(r.rate)+r.burst {
			return true
		}
	}
	return false
}

// ownUS is the cumulative worker CPU per message of the first of wabulk's functions whose
// name ends with fn.
func (pr *profileResult) ownUS(fn string) (float64, bool) {
	for _, l := range pr.own {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[5], fn) {
			continue
		}
		d, err := time.ParseDuration(f[3])
		if err != nil {
			return 0, false
		}
		return float64(d.Microseconds()) / float64(pr.jobs), true
	}
	return 0, false
}

func (pr *profileResult) ownSummary() string {
	var parts []string
	for _, s := range []struct{ fn, what string }{
		{"worker.(*handler).ProcessTask", "the whole handler"},
		{"internal/kaleyra.(*Client).Send", "Kaleyra call (HTTP client)"},
		{"worker.(*handler).sent", "`sent`: ledger.Sent + task result + log line"},
		{"internal/ledger.(*Ledger).Begin", "ledger.Begin"},
		{"internal/ratelimit.(*bucket).fetch", "limiter fetch"},
		{"internal/job.Decode", "job.Decode"},
		{"internal/job.NormalizeNumber", "of which libphonenumber"},
		{"internal/kaleyra.ParseAnswer", "ParseAnswer (2xx decode)"},
		{"internal/kaleyra.messageID", "messageID (second decode)"},
	} {
		if us, ok := pr.ownUS(s.fn); ok {
			parts = append(parts, fmt.Sprintf("%s %.1f", s.what, us))
		}
	}
	return strings.Join(parts, "; ")
}
