package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/httpapi"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// The many-lanes phase (issue 24, item 5). Every (campaign, sender) pair is a lane, and POST
// /v1/messages without a campaign makes one campaign (msg-<hash>) per distinct message, so a
// client posting single messages makes one lane per message. Workers serve the lanes with one
// dispatch loop per sender (worker/dispatch.go): a lane with work is announced on PubSub; a lane
// with nothing due costs only the upkeep's sweep and retirement checks. Against a baseline in
// the same run, it measures:
//
//	a. 5,000 one-message campaigns posted during a run (one worker) against the same 5,000
//	   posts naming one campaign: send rate, Redis commands and worker CPU per message;
//	b. posts at 100/s for 60 s without a campaign (two workers): post → Kaleyra call latency
//	   and Redis commands per message, against the same posts naming one campaign;
//	c. 5,000 live lanes with nothing due under two workers: Redis commands per lane per second,
//	   against the same two workers with no lane;
//	d. a new campaign's first send (a post without a campaign) while those 5,000 lanes are live,
//	   against the same with none.
//
// The API is `wabulk serve`'s (httpapi.New and Serve, in the benchmark process on a loopback
// port, a fresh one per run: the producer remembers the lanes it declared); workers are `wabulk
// worker` processes of the built binary at WABULK_RATE=1e6 (the limiter runs but does not bind),
// against a zero-latency sandbox.

const (
	manyMsgs     = 5000  // (a): posts per run; (c): idle lanes
	manyConc     = 50    // WABULK_CONCURRENCY of the phase's workers
	manyPosters  = 16    // (a): posts in flight
	trickleRate  = 100.0 // (b): posts per second
	trickleSecs  = 60    // (b): seconds of posting
	manyWorkers  = 2     // (b), (c), (d)
	firstSendN   = 20    // (d): new campaigns, one at a time
	firstOffset  = 3_000_000
	retireWithin = 2 * time.Minute // how long a run waits for its lanes to retire
)

// liveKey is the namespace's set of live lanes (internal/store/lanes.go).
var liveKey = "wabulk:{" + queue + "}:lanes:live"

// postRun is one run of posts to POST /v1/messages, sent by the workers as they arrive.
type postRun struct {
	one            bool // every post names one campaign (the baseline)
	msgs, workers  int
	paced          float64 // posts per second asked; 0: as fast as manyPosters in flight allow
	postRate       float64 // posts answered per second, first post to last answer
	sendRate       float64 // messages per second, first post to the last call's arrival
	p50, p99, max  time.Duration
	firstP50       time.Duration // p50 latency of the first tenth of the posts
	lastP50        time.Duration // … and of the last tenth
	lanes          int64         // live lanes when the last call arrived
	cmdsSent       float64       // Redis commands processed per message, first post to 1 s after the last call
	cmdsAll        float64       // … to the retirement of every lane
	retired        time.Duration
	retiredOK      bool
	workerUS       float64            // CPU µs per message of the worker processes, first post to 1 s after the last call
	benchUS        float64            // … of the benchmark process (API, posters, sandbox)
	redisUS        float64            // … of redis-server
	top            map[string]float64 // commands per message by command, to the retirement
	outcomes       map[string]int
	warnings       []string
	elapsedPosting time.Duration
	noscript       int64 // commands Redis answered NOSCRIPT, first post to retirement
}

func (r postRun) side() string { return postSide(r.one) }

func postSide(one bool) string {
	if one {
		return "one campaign"
	}
	return "a campaign each"
}

// idleRun is Redis's work over a window with workers that have nothing to send.
type idleRun struct {
	what         string
	lanes        int
	dur          time.Duration
	cmdsPerSec   float64 // total_commands_processed delta per second (inside scripts included)
	clientPerSec float64 // commands clients sent (MONITOR), per second
	clients      int64   // connected_clients at the end of the window
	rssKiB       int64   // the workers' VmRSS at the end of the window, summed
	cpuPerSec    float64 // the workers' CPU seconds per second, summed
	calls        map[string]int64
	byClient     map[string]int64
	scripts      map[string]int64 // script calls clients sent, by keys (see monitor.scriptKeys)
	noscript     int64            // commands Redis answered NOSCRIPT
}

// apiRun is the API alone: the posts of (a) with no worker running.
type apiRun struct {
	one       bool
	posts     int
	rate      float64            // posts answered per second
	cmdsPer   float64            // Redis commands processed per post (inside scripts included)
	clientPer float64            // commands the API sent per post (MONITOR)
	benchUS   float64            // CPU µs per post of the benchmark process (API and posters)
	top       map[string]float64 // commands processed per post by command
	scripts   map[string]float64 // script calls per post by keys (monitor.scriptKeys)
}

type manyResult struct {
	msgs, trickleN int
	api            []apiRun  // (a) without workers: one campaign, a campaign each
	burst          []postRun // (a), ABBA
	trickle        []postRun // (b): a campaign each, then one campaign
	idle           []idleRun // (c): no lane, then idleN lanes
	idleN          int
	warm           time.Duration // (c): from the workers' start to the window
	warmPerSec     float64       // (c): commands processed per second over warm
	firstBase      []time.Duration
	firstMany      []time.Duration
	warnings       []string
}

// noscript is the NOSCRIPT answers of a. and b.
func (r *manyResult) noscript() (n int64) {
	for _, x := range append(slices.Clone(r.burst), r.trickle...) {
		n += x.noscript
	}
	return n
}

// burstSide averages (a)'s runs of one side.
func (r *manyResult) burstSide(one bool) (m postRun) {
	k := 0.0
	for _, x := range r.burst {
		if x.one != one {
			continue
		}
		m.one, m.msgs, m.workers = one, x.msgs, x.workers
		m.postRate += x.postRate
		m.sendRate += x.sendRate
		m.cmdsSent += x.cmdsSent
		m.cmdsAll += x.cmdsAll
		m.workerUS += x.workerUS
		m.benchUS += x.benchUS
		m.redisUS += x.redisUS
		m.lanes = max(m.lanes, x.lanes)
		m.top = x.top
		k++
	}
	if k > 0 {
		m.postRate, m.sendRate, m.cmdsSent, m.cmdsAll = m.postRate/k, m.sendRate/k, m.cmdsSent/k, m.cmdsAll/k
		m.workerUS, m.benchUS, m.redisUS = m.workerUS/k, m.benchUS/k, m.redisUS/k
	}
	return m
}

// burstRatio is (a)'s send rate with a campaign each over the rate with one campaign.
func (r *manyResult) burstRatio() float64 {
	return r.burstSide(false).sendRate / r.burstSide(true).sendRate
}

// perLane is (commands/s with the idle lanes − with none) / lanes, processed and sent by clients.
func (r *manyResult) perLane() (total, client float64, ok bool) {
	if len(r.idle) < 2 {
		return 0, 0, false
	}
	zero, many := r.idle[0], r.idle[1]
	n := float64(many.lanes)
	return (many.cmdsPerSec - zero.cmdsPerSec) / n, (many.clientPerSec - zero.clientPerSec) / n, true
}

// passes is how many script calls of the kind keys each idle lane got in the window.
func (r *manyResult) passes(keys string) float64 {
	if len(r.idle) < 2 {
		return 0
	}
	zero, many := r.idle[0], r.idle[1]
	return float64(many.scripts[keys]-zero.scripts[keys]) / float64(many.lanes)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return pct(s, 0.5)
}

func maxDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func (b *bench) manyLanes(ctx context.Context) (manyResult, error) {
	res := manyResult{msgs: max(200, sc(manyMsgs, b.scale)), idleN: max(200, sc(manyMsgs, b.scale))}
	trickleDur := max(5, trickleSecs*b.scale)
	res.trickleN = int(trickleRate * trickleDur)
	sb, err := startSandboxFor(0, 0, laneSenders...)
	if err != nil {
		return res, err
	}
	defer sb.close()

	b.logf("  a. %d posts, %d in flight, one worker (concurrency %d, rate not binding), ABBA:", res.msgs, manyPosters, manyConc)
	for k, one := range []bool{true, false, false, true} {
		r, err := b.postRun(ctx, sb, fmt.Sprintf("many-a%d", k), one, res.msgs, 1, 0)
		if err != nil {
			return res, fmt.Errorf("a, %s: %w", r.side(), err)
		}
		b.logRun(r)
		res.burst = append(res.burst, r)
	}
	for _, one := range []bool{true, false} {
		r, err := b.apiOnly(ctx, one, res.msgs)
		if err != nil {
			return res, fmt.Errorf("a, API alone: %w", err)
		}
		b.logf("    API alone, %-15s %5d posts, no worker: %6.0f posts/s, %.1f Redis commands processed per post (%.1f sent), bench process %.0f µs/post; scripts/post: %s",
			postSide(one), r.posts, r.rate, r.cmdsPer, r.clientPer, r.benchUS, topList(r.scripts, 8, "%.2f"))
		res.api = append(res.api, r)
	}
	one, each := res.burstSide(true), res.burstSide(false)
	b.logf("  => a. a campaign each %.0f msgs/s, one campaign %.0f msgs/s, ratio %.3f (target ≥ %.2f); Redis commands/msg %.1f vs %.1f "+
		"(to retirement %.1f vs %.1f); worker CPU/msg %.0f vs %.0f µs",
		each.sendRate, one.sendRate, res.burstRatio(), targetManyRatio, each.cmdsSent, one.cmdsSent, each.cmdsAll, one.cmdsAll,
		each.workerUS, one.workerUS)

	b.logf("  b. %g posts/s for %.0f s (%d), %d workers:", trickleRate, trickleDur, res.trickleN, manyWorkers)
	for k, one := range []bool{false, true} {
		r, err := b.postRun(ctx, sb, fmt.Sprintf("many-b%d", k), one, res.trickleN, manyWorkers, trickleRate)
		if err != nil {
			return res, fmt.Errorf("b, %s: %w", r.side(), err)
		}
		b.logRun(r)
		res.trickle = append(res.trickle, r)
	}

	if err := b.manyIdle(ctx, sb, &res); err != nil {
		return res, err
	}
	return res, nil
}

func (b *bench) logRun(r postRun) {
	b.logf("    %-15s %5d msgs: posts %6.0f/s, sent %6.0f/s; post→call p50 %v p99 %v max %v; %5d live lanes at the end; "+
		"Redis commands/msg %.1f (to retirement %.1f, lanes retired %v after the last call); CPU µs/msg: workers %.0f, bench process %.0f, redis-server %.0f; outcomes %v",
		r.side(), r.msgs, r.postRate, r.sendRate, ms(r.p50), ms(r.p99), ms(r.max), r.lanes, r.cmdsSent, r.cmdsAll,
		retiredText(r), r.workerUS, r.benchUS, r.redisUS, r.outcomes)
	for _, w := range r.warnings {
		b.logf("      worker log: %s", w)
	}
}

func retiredText(r postRun) string {
	if !r.retiredOK {
		return fmt.Sprintf("not all within %v", retireWithin)
	}
	return ms(r.retired)
}

// postRun posts n messages to a fresh API while `workers` worker processes send them: as fast
// as manyPosters in flight allow (paced 0) or paced per second. It then waits until every lane
// is retired, so the commands counted to there are each message's whole cost, its lane's
// registration, announcement, take, checks and retirement included.
func (b *bench) postRun(ctx context.Context, sb *fakeKaleyra, name string, one bool, n, workers int, paced float64) (postRun, error) {
	r := postRun{one: one, msgs: n, workers: workers, paced: paced}
	if err := b.redis.flush(ctx); err != nil {
		return r, err
	}
	sb.reset()
	api, err := startMsgAPI(ctx, b.redis)
	if err != nil {
		return r, err
	}
	defer api.stop()
	ws, logs, err := b.startWorkers(sb, workers, name)
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			stopWorkers(ws)
		}
	}()
	time.Sleep(time.Second) // subscribed, first reads done
	campaign := ""
	if one {
		campaign = "one"
	}
	enq, answered := make([]time.Time, n), make([]time.Time, n)
	post := func(i int) error {
		enq[i] = time.Now()
		err := api.post(ctx, campaign, i)
		answered[i] = time.Now()
		return err
	}
	st0, err := b.redis.stats(ctx)
	if err != nil {
		return r, err
	}
	nos0, err := b.redis.errorCount(ctx, "NOSCRIPT")
	if err != nil {
		return r, err
	}
	w0, p0, r0 := workersCPU(ws), procCPU(os.Getpid()), b.redis.cpu()
	t0 := time.Now()
	if paced == 0 {
		err = parallel(n, manyPosters, post)
	} else {
		const pacers = 4 // each paces every 4th post, so one slow answer does not hold up the rest
		interval := time.Duration(float64(time.Second) / paced)
		err = parallel(pacers, pacers, func(k int) error {
			for i := k; i < n; i += pacers {
				if wait := time.Until(t0.Add(time.Duration(i) * interval)); wait > 0 {
					time.Sleep(wait)
				}
				if err := post(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return r, err
	}
	r.elapsedPosting = slices.MaxFunc(answered, func(a, c time.Time) int { return a.Compare(c) }).Sub(t0)
	if err := sb.waitCalls(int64(n), time.Duration(n)*10*time.Millisecond+time.Minute); err != nil {
		return r, err
	}
	if r.lanes, err = b.redis.rdb.SCard(ctx, liveKey).Result(); err != nil {
		return r, err
	}
	time.Sleep(time.Second)
	st1, err := b.redis.stats(ctx)
	if err != nil {
		return r, err
	}
	w1, p1, r1 := workersCPU(ws), procCPU(os.Getpid()), b.redis.cpu()
	for deadline := time.Now().Add(retireWithin); ; {
		live, err := b.redis.rdb.SCard(ctx, liveKey).Result()
		if err != nil {
			return r, err
		}
		if live == 0 {
			r.retiredOK = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	tRetired := time.Now()
	st2, err := b.redis.stats(ctx)
	if err != nil {
		return r, err
	}
	nos2, err := b.redis.errorCount(ctx, "NOSCRIPT")
	if err != nil {
		return r, err
	}
	r.noscript = nos2 - nos0
	stopped = true
	serr := stopWorkers(ws)
	for _, l := range logs {
		wl := readWorkerLog(l)
		r.outcomes = addCounts(r.outcomes, wl.outcomes)
		r.warnings = append(r.warnings, wl.warnings...)
	}
	if serr != nil {
		return r, serr
	}
	calls, err := sb.sortedCalls()
	if err != nil {
		return r, err
	}
	writeCalls(filepath.Join(b.tmp, name+"-calls.csv"), calls, t0)
	if len(calls) != n {
		return r, fmt.Errorf("%d calls for %d posts", len(calls), n)
	}
	lat := make([]time.Duration, 0, n)
	var first, lastTenth []time.Duration
	for _, c := range calls {
		i := index(c.To)
		if i < 0 || i >= n {
			return r, fmt.Errorf("call to %s is not one of the posts", c.To)
		}
		d := c.Time.Sub(enq[i])
		lat = append(lat, d)
		switch {
		case i < n/10:
			first = append(first, d)
		case i >= n-n/10:
			lastTenth = append(lastTenth, d)
		}
	}
	r.firstP50, r.lastP50 = median(first), median(lastTenth)
	slices.Sort(lat)
	r.p50, r.p99, r.max = pct(lat, 0.5), pct(lat, 0.99), lat[len(lat)-1]
	last := calls[len(calls)-1].Time
	r.sendRate = float64(n) / last.Sub(t0).Seconds()
	r.postRate = float64(n) / r.elapsedPosting.Seconds()
	r.retired = tRetired.Sub(last)
	per := float64(n)
	r.cmdsSent = float64(st1.sub(st0).total) / per
	all := st2.sub(st0)
	r.cmdsAll = float64(all.total) / per
	r.top = map[string]float64{}
	for k, v := range all.calls {
		r.top[k] = float64(v) / per
	}
	r.workerUS = float64((w1 - w0).Microseconds()) / per
	r.benchUS = float64((p1 - p0).Microseconds()) / per
	r.redisUS = float64((r1 - r0).Microseconds()) / per
	return r, nil
}

// apiOnly posts n messages to a fresh API with no worker running and counts what Redis did:
// the API's own share of a message's cost.
func (b *bench) apiOnly(ctx context.Context, one bool, n int) (apiRun, error) {
	r := apiRun{one: one, posts: n}
	if err := b.redis.flush(ctx); err != nil {
		return r, err
	}
	api, err := startMsgAPI(ctx, b.redis)
	if err != nil {
		return r, err
	}
	defer api.stop()
	campaign := ""
	if one {
		campaign = "one"
	}
	mon, err := b.redis.monitor()
	if err != nil {
		return r, err
	}
	mon.countScripts()
	mon.gateOnStats()
	st0, err := b.redis.stats(ctx)
	if err != nil {
		mon.stop()
		return r, err
	}
	p0 := procCPU(os.Getpid())
	t0 := time.Now()
	err = parallel(n, manyPosters, func(i int) error { return api.post(ctx, campaign, i) })
	el := time.Since(t0)
	p1 := procCPU(os.Getpid())
	st1, serr := b.redis.stats(ctx)
	clients, _, _ := mon.stop()
	if err = errors.Join(err, serr); err != nil {
		return r, err
	}
	per := float64(n)
	d := st1.sub(st0)
	r.rate = per / el.Seconds()
	r.cmdsPer = float64(d.total) / per
	r.clientPer = float64(clients) / per
	r.benchUS = float64((p1 - p0).Microseconds()) / per
	r.top, r.scripts = map[string]float64{}, map[string]float64{}
	for k, v := range d.calls {
		r.top[k] = float64(v) / per
	}
	for k, v := range mon.scriptCounts() {
		r.scripts[k] = float64(v) / per
	}
	return r, nil
}

// apiSide is the API-alone run of one side (zero when not measured).
func (r *manyResult) apiSide(one bool) apiRun {
	for _, a := range r.api {
		if a.one == one {
			return a
		}
	}
	return apiRun{}
}

func addCounts(a, c map[string]int) map[string]int {
	if a == nil {
		a = map[string]int{}
	}
	for k, v := range c {
		a[k] += v
	}
	return a
}

// manyIdle is (c) and (d): two workers with no lane, then with idleN live lanes that have
// nothing due; Redis's work over a window, then first sends of new campaigns.
func (b *bench) manyIdle(ctx context.Context, sb *fakeKaleyra, res *manyResult) error {
	baseDur := time.Duration(max(5, 30*b.scale) * float64(time.Second))
	idleDur := time.Duration(max(10, 90*b.scale) * float64(time.Second))
	res.warm = time.Duration(max(10, 70*b.scale) * float64(time.Second))
	for _, lanes := range []int{0, res.idleN} {
		if err := b.redis.flush(ctx); err != nil {
			return err
		}
		sb.reset()
		if lanes > 0 {
			t := time.Now()
			if err := makeIdleLanes(ctx, b.redis, lanes, 1); err != nil {
				return err
			}
			b.logf("  c. %d live lanes made (one scheduled task an hour ahead each, one sender) in %v", lanes, time.Since(t).Round(100*time.Millisecond))
		}
		api, err := startMsgAPI(ctx, b.redis)
		if err != nil {
			return err
		}
		ws, logs, err := b.startWorkers(sb, manyWorkers, fmt.Sprintf("many-idle-%d", lanes))
		if err != nil {
			api.stop()
			return err
		}
		run, first, err := b.idleAndFirst(ctx, api, sb, ws, lanes, baseDur, idleDur, res)
		serr := stopWorkers(ws)
		api.stop()
		for _, l := range logs {
			res.warnings = append(res.warnings, readWorkerLog(l).warnings...)
		}
		if err = errors.Join(err, serr); err != nil {
			return err
		}
		res.idle = append(res.idle, run)
		b.logf("  c. %-34s over %v: %8.1f commands/s processed, %7.1f sent by clients, workers' CPU %.3f s/s, VmRSS %s, connected_clients %d",
			run.what, run.dur, run.cmdsPerSec, run.clientPerSec, run.cpuPerSec, mib(run.rssKiB), run.clients)
		b.logf("  d. first send of a new campaign, %d live lanes: median %v, max %v (%d campaigns)", lanes, ms(median(first)), ms(maxDur(first)), len(first))
		if lanes == 0 {
			res.firstBase = first
		} else {
			res.firstMany = first
		}
	}
	if tot, cl, ok := res.perLane(); ok {
		b.logf("  => c. per idle lane: %.3f commands/s processed, %.3f sent by clients (bound %g); in the window each lane got %.2f sweeps, %.2f retirement checks, %.2f reconciler reads; first %v after the start: %.3f commands/s per lane",
			tot, cl, idleBound, res.passes("pending,retry"), res.passes("pending,active"), res.passes("reconcile,archived"), res.warm,
			(res.warmPerSec-res.idle[0].cmdsPerSec)/float64(res.idleN))
		for _, l := range res.idleTop(8) {
			b.logf("    %s", l)
		}
		b.logf("  => d. median %v with %d lanes, %v with none (target ≤ %v)", ms(median(res.firstMany)), res.idleN, ms(median(res.firstBase)), ms(targetFirstSend))
	}
	return nil
}

// idleAndFirst lets the workers settle (with lanes: res.warm, so the retirement checks reach
// their longest gap and the startup's takes are over), counts Redis's work over the window,
// then times the first sends.
func (b *bench) idleAndFirst(ctx context.Context, api *msgAPI, sb *fakeKaleyra, ws []*workerProc, lanes int,
	baseDur, idleDur time.Duration, res *manyResult) (idleRun, []time.Duration, error) {
	dur := baseDur
	if lanes == 0 {
		time.Sleep(3 * time.Second)
	} else {
		dur = idleDur
		st0, err := b.redis.stats(ctx)
		if err != nil {
			return idleRun{}, nil, err
		}
		t := time.Now()
		time.Sleep(res.warm)
		st1, err := b.redis.stats(ctx)
		if err != nil {
			return idleRun{}, nil, err
		}
		res.warmPerSec = float64(st1.sub(st0).total) / time.Since(t).Seconds()
	}
	run, err := b.idleWindow(ctx, ws, dur)
	if err != nil {
		return run, nil, err
	}
	run.lanes, run.dur = lanes, dur
	run.what = fmt.Sprintf("%d workers, %d idle lanes", len(ws), lanes)
	first, err := b.firstSends(ctx, api, sb, firstSendN)
	return run, first, err
}

// firstSends posts k messages without a campaign, one at a time (each its own new campaign and
// lane), and times each from its post to its call's arrival at the sandbox.
func (b *bench) firstSends(ctx context.Context, api *msgAPI, sb *fakeKaleyra, k int) ([]time.Duration, error) {
	sb.reset()
	var lat []time.Duration
	for j := range k {
		i := firstOffset + j
		t := time.Now()
		if err := api.post(ctx, "", i); err != nil {
			return lat, err
		}
		// The call log, not waitCalls: the count goes up before the sandbox logs the call.
		d, err := callOf(sb, i, 30*time.Second)
		if err != nil {
			return lat, err
		}
		lat = append(lat, d.Sub(t))
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(sb.sb.Calls()); n != k {
		return lat, fmt.Errorf("%d calls for %d posts", n, k)
	}
	return lat, nil
}

// callOf waits for the call to recipient(i) in the sandbox's log and returns its arrival time.
func callOf(sb *fakeKaleyra, i int, timeout time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(timeout); ; {
		for _, c := range sb.sb.Calls() {
			if index(c.To) == i {
				return c.Time, nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no call to %s within %v", recipient(i), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// idleWindow counts Redis's work over d: INFO before and after, MONITOR for what clients sent,
// and the workers' CPU.
func (b *bench) idleWindow(ctx context.Context, ws []*workerProc, d time.Duration) (idleRun, error) {
	var r idleRun
	mon, err := b.redis.monitor()
	if err != nil {
		return r, err
	}
	mon.countScripts()
	mon.gateOnStats()
	before, err := b.redis.stats(ctx)
	if err != nil {
		mon.stop()
		return r, err
	}
	nos0, err := b.redis.errorCount(ctx, "NOSCRIPT")
	if err != nil {
		mon.stop()
		return r, err
	}
	cpu0 := workersCPU(ws)
	t := time.Now()
	time.Sleep(d)
	after, err := b.redis.stats(ctx)
	el := time.Since(t).Seconds()
	cpu1 := workersCPU(ws)
	clients, _, byName := mon.stop()
	r.scripts = mon.scriptCounts()
	if err != nil {
		return r, err
	}
	delta := after.sub(before)
	r.cmdsPerSec = float64(delta.total) / el
	r.clientPerSec = float64(clients) / el
	r.cpuPerSec = (cpu1 - cpu0).Seconds() / el
	r.calls, r.byClient = delta.calls, byName
	nos1, err := b.redis.errorCount(ctx, "NOSCRIPT")
	if err != nil {
		return r, err
	}
	r.noscript = nos1 - nos0
	info, err := b.redis.rdb.Info(ctx, "clients").Result()
	if err != nil {
		return r, err
	}
	r.clients, _ = strconv.ParseInt(infoField(info, "connected_clients"), 10, 64)
	for _, w := range ws {
		st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(w.cmd.Process.Pid), "status"))
		if err != nil {
			return r, err
		}
		r.rssKiB += statusKiB(st, "VmRSS:")
	}
	return r, nil
}

// scriptRoles names the script calls of idle workers by their first keys (monitor.scriptKeys).
var scriptRoles = map[string]string{
	"pending,retry":      "upkeep sweep (Ledger.Sweep: expired completed tasks, due index, pending count)",
	"pending,active":     "upkeep retirement check (Ledger.Backlog)",
	"reconcile,archived": "reconciler (archived since its mark)",
	"pending,paused":     "dispatch take (Ledger.Take)",
	"lanes,lanes":        "live lanes read (Ledger.LiveLanes, each worker every 5 s)",
	"lanes":              "upkeep lock",
	"reconcile":          "reconciler lock",
}

// idleTop lists, per idle lane per second, the commands the idle lanes added (the many-lane run
// less the 0-lane run), by what clients sent and by what Redis ran (inside scripts included),
// and the script calls by role.
func (r *manyResult) idleTop(n int) []string {
	if len(r.idle) < 2 {
		return nil
	}
	zero, many := r.idle[0], r.idle[1]
	per := func(x int64, z int64) float64 {
		return float64(x)/float64(many.lanes)/many.dur.Seconds() - float64(z)/float64(many.lanes)/zero.dur.Seconds()
	}
	top := func(a, z map[string]int64) string {
		d := map[string]float64{}
		for k, v := range a {
			if x := per(v, z[k]); x >= 0.0005 {
				d[k] = x
			}
		}
		return topList(d, n, "%.4f")
	}
	lines := []string{"sent by clients: " + top(many.byClient, zero.byClient),
		"run by Redis (inside scripts included): " + top(many.calls, zero.calls)}
	keys := slices.Sorted(maps.Keys(many.scripts))
	slices.SortStableFunc(keys, func(x, y string) int {
		return int((many.scripts[y] - zero.scripts[y]) - (many.scripts[x] - zero.scripts[x]))
	})
	for _, k := range keys {
		if x := per(many.scripts[k], zero.scripts[k]); x >= 0.0005 {
			role := scriptRoles[k]
			if role == "" {
				role = "script on keys " + k
			}
			lines = append(lines, fmt.Sprintf("%s: %.4f", role, x))
		}
	}
	return lines
}

// topList is the n largest values of d, "name value" each, largest first.
func topList(d map[string]float64, n int, format string) string {
	keys := slices.Sorted(maps.Keys(d))
	slices.SortStableFunc(keys, func(x, y string) int {
		switch {
		case d[x] > d[y]:
			return -1
		case d[x] < d[y]:
			return 1
		}
		return 0
	})
	var parts []string
	for i, k := range keys {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s "+format, k, d[k]))
	}
	return strings.Join(parts, ", ")
}

// msgAPI is `wabulk serve`'s API (httpapi) in process on a loopback port, with a client.
type msgAPI struct {
	url    string
	client *http.Client
	stop   func()
}

func startMsgAPI(ctx context.Context, r *redisServer) (*msgAPI, error) {
	base, stop, err := serveAPI(ctx, httpapi.Config{Redis: r.connOpt(), Tokens: []config.Secret{cbToken},
		Producer: producer.Config{Queue: queue, Retention: retention, DefaultFrom: sender}})
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConns: 2 * manyPosters, MaxIdleConnsPerHost: manyPosters}
	m := &msgAPI{url: base + "/v1/messages", client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	m.stop = func() {
		tr.CloseIdleConnections()
		stop()
	}
	return m, nil
}

// serveAPI runs `wabulk serve`'s HTTP server in process on a free loopback port: its base URL,
// and a stop that shuts it down.
func serveAPI(ctx context.Context, cfg httpapi.Config) (string, func(), error) {
	api, err := httpapi.New(cfg, nil)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, errors.Join(err, api.Close())
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- api.Serve(sctx, ln) }()
	return "http://" + ln.Addr().String(), func() { cancel(); <-served; api.Close() }, nil
}

// post sends message i: an image to recipient(i) with ref r<i>, so that without a campaign each
// message's content, and so its msg-<hash> campaign, is its own; campaign names one when set.
func (m *msgAPI) post(ctx context.Context, campaign string, i int) error {
	body, err := json.Marshal(httpapi.MessageRequest{Campaign: campaign,
		Fields: job.Fields{To: recipient(i), Type: "image", MediaLink: mediaLink, Ref: "r" + strconv.Itoa(i)}})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cbToken)
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var a struct {
		Enqueued int `json:"enqueued"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(raw, &a) != nil || a.Enqueued != 1 {
		return fmt.Errorf("POST /v1/messages (message %d): %d %.300s", i, resp.StatusCode, raw)
	}
	return nil
}

// startWorkers starts n `wabulk worker` processes at the phase's concurrency, rate not binding,
// and waits for each one's "worker started" line.
func (b *bench) startWorkers(sb *fakeKaleyra, n int, name string) ([]*workerProc, []string, error) {
	var ws []*workerProc
	var logs []string
	for k := range n {
		logPath := filepath.Join(b.tmp, fmt.Sprintf("%s-w%d.log", name, k))
		w, err := b.startWorker(sb, logPath, manyConc, unboundRate)
		if err != nil {
			stopWorkers(ws)
			return nil, nil, err
		}
		ws, logs = append(ws, w), append(logs, logPath)
	}
	return ws, logs, nil
}

func stopWorkers(ws []*workerProc) error {
	var errs []error
	for _, w := range ws {
		_, err := w.stop(40 * time.Second)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// workersCPU is the CPU time of the worker processes so far, summed.
func workersCPU(ws []*workerProc) time.Duration {
	var t time.Duration
	for _, w := range ws {
		t += procCPU(w.cmd.Process.Pid)
	}
	return t
}
