package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// The lanes phase: every (campaign, sender) pair is its own asynq queue (internal/store's
// package comment), served by one dispatch loop per sender in each worker (worker/dispatch.go).
// It measures, with one `wabulk worker` process of the built binary against a zero-latency
// sandbox, what lanes promise: senders do not wait for each other, and a small campaign is not
// stuck behind a big one on the same sender. What many lanes cost (a lane per message, idle
// lanes, a new campaign's first send among thousands) is the many-lanes phase (manylanes.go).

const (
	laneRate = 50.0 // WABULK_RATE of the lanes phase
	laneConc = 20   // WABULK_CONCURRENCY (each sender's loop has this many slots)
	// smallOffset is where the small campaign's recipients start, so the sandbox's call log
	// tells the two campaigns of one sender apart.
	smallOffset = 1_000_000
)

// laneSenders are the sandbox account's numbers: the first is the benchmark's sender.
var laneSenders = []string{sender, "+919000000002", "+919000000003", "+919000000004"}

type senderRate struct {
	sender, campaign string
	jobs             int
	enqueued         time.Duration // when its enqueue call started, after the first campaign's
	first, last      time.Duration // its first and last call, after the first campaign's enqueue
	rate             float64       // in the window where all senders are busy
	min5             float64       // its lowest average over 5 s in that window
}

type lanesResult struct {
	rate float64
	conc int

	// 1. three senders
	senders   []senderRate
	window    time.Duration
	aggregate float64
	outcomes1 map[string]int
	dupCalls1 int
	warnings1 []string

	// 2. small campaign behind a big one on one sender
	bigJobs, smallJobs int
	smallAt            time.Duration // small enqueue after the big one's
	smallFirst         time.Duration // its first call after its enqueue
	smallDone          time.Duration // its last call after its enqueue
	fairExpect         time.Duration // 2·size/r
	fifoExpect         time.Duration // the big backlog ahead of it at its enqueue, then itself, at r
	bigBefore          int           // big calls before the small enqueue
	bigDoneFrac        float64       // of the big campaign, sent when the small one finished
	smallShare         float64       // small's share of the sender's calls while it ran
	senderRate2        float64       // the sender's calls/s while the small one ran
	outcomes2          map[string]int
	warnings2          []string
}

func (b *bench) lanes(ctx context.Context) (lanesResult, error) {
	res := lanesResult{rate: laneRate, conc: laneConc}
	sb, err := startSandboxFor(0, 0, laneSenders...)
	if err != nil {
		return res, err
	}
	defer sb.close()
	if err := b.lanesSenders(ctx, sb, &res); err != nil {
		return res, fmt.Errorf("three senders: %w", err)
	}
	b.logf("  three senders at %g/s each, one worker × concurrency %d, window %.1f s where all are busy:", laneRate, laneConc, res.window.Seconds())
	for _, s := range res.senders {
		b.logf("    %s (%s, %d jobs, enqueued at +%v): first call +%v, last +%v; %.2f/s = %.4f of r (lowest 5 s: %.1f/s)",
			s.sender, s.campaign, s.jobs, ms(s.enqueued), ms(s.first), ms(s.last), s.rate, s.rate/laneRate, s.min5)
	}
	b.logf("    aggregate %.2f/s = %.4f of 3r; outcomes %v; duplicate calls %d",
		res.aggregate, res.aggregate/(3*laneRate), res.outcomes1, res.dupCalls1)
	for _, w := range res.warnings1 {
		b.logf("    worker log: %s", w)
	}

	if err := b.lanesSmall(ctx, sb, &res); err != nil {
		return res, fmt.Errorf("small behind big: %w", err)
	}
	b.logf("  small campaign (%d jobs) enqueued %v after a big one (%d jobs) on the same sender: first call %v, done %v after its enqueue "+
		"(fair share 2·size/r = %v; FIFO: %d big jobs ahead → %v); big campaign %.1f%% done then; small's share of the sender %.3f, sender at %.2f/s; "+
		"outcomes %v",
		res.smallJobs, ms(res.smallAt), res.bigJobs, ms(res.smallFirst), ms(res.smallDone), ms(res.fairExpect), res.bigJobs-res.bigBefore,
		ms(res.fifoExpect), 100*res.bigDoneFrac, res.smallShare, res.senderRate2, res.outcomes2)
	for _, w := range res.warnings2 {
		b.logf("    worker log: %s", w)
	}

	return res, nil
}

// lanesSenders: three campaigns on three senders, the biggest first (under the single FIFO
// queue its jobs, all waiting for sender 1's rate, held every slot ahead of the others).
func (b *bench) lanesSenders(ctx context.Context, sb *fakeKaleyra, res *lanesResult) error {
	if err := b.redis.flush(ctx); err != nil {
		return err
	}
	sb.reset()
	logPath := filepath.Join(b.tmp, "lanes-senders.log")
	w, err := b.startLaneWorker(sb, logPath)
	if err != nil {
		return err
	}
	n := max(sc(1000, b.scale), 300) // 20 s at 50/s (at least 6 s for a trial)
	plan := []struct {
		campaign, from string
		jobs           int
	}{{"fifo-head", laneSenders[0], n * 5 / 4}, {"second", laneSenders[1], n}, {"third", laneSenders[2], n}}
	t0 := time.Now()
	total := 0
	for _, p := range plan {
		at := time.Since(t0)
		if err := enqueueFrom(ctx, b.redis, p.campaign, p.from, 0, p.jobs); err != nil {
			w.stop(40 * time.Second)
			return err
		}
		res.senders = append(res.senders, senderRate{sender: p.from, campaign: p.campaign, jobs: p.jobs, enqueued: at})
		total += p.jobs
	}
	werr := sb.waitCalls(int64(total), time.Duration(float64(n*5/4)/laneRate*1.5*float64(time.Second))+30*time.Second)
	log, calls, err := b.endLaneRun(w, sb, logPath, "lanes-senders-calls.csv", t0, werr)
	res.outcomes1, res.warnings1 = log.outcomes, log.warnings
	if err != nil {
		return err
	}
	bySender := map[string][]sandbox.Call{}
	seen := map[string]bool{}
	for _, c := range calls {
		bySender["+"+c.From] = append(bySender["+"+c.From], c)
		k := c.From + c.To
		if seen[k] {
			res.dupCalls1++
		}
		seen[k] = true
	}
	var from, to time.Time
	for i := range res.senders {
		s := &res.senders[i]
		cs := bySender[s.sender]
		if len(cs) != s.jobs {
			return fmt.Errorf("sender %s: %d calls for %d jobs", s.sender, len(cs), s.jobs)
		}
		s.first, s.last = cs[0].Time.Sub(t0), cs[len(cs)-1].Time.Sub(t0)
		if from.IsZero() || cs[0].Time.After(from) {
			from = cs[0].Time
		}
		if to.IsZero() || cs[len(cs)-1].Time.Before(to) {
			to = cs[len(cs)-1].Time
		}
	}
	// The window where all three are busy, less a second at each end (opening burst, tail).
	from, to = from.Add(time.Second), to.Add(-time.Second)
	if !to.After(from.Add(2 * time.Second)) {
		return fmt.Errorf("senders busy together for only %v", to.Sub(from)+2*time.Second)
	}
	res.window = to.Sub(from)
	for i := range res.senders {
		s := &res.senders[i]
		s.rate = rateBetween(bySender[s.sender], from, to)
		s.min5 = lowestAverage(bySender[s.sender], from, to, 5*time.Second)
		res.aggregate += s.rate
	}
	return nil
}

// lanesSmall: a big campaign on one sender, then ~2 s later a small one on the same sender.
func (b *bench) lanesSmall(ctx context.Context, sb *fakeKaleyra, res *lanesResult) error {
	if err := b.redis.flush(ctx); err != nil {
		return err
	}
	sb.reset()
	logPath := filepath.Join(b.tmp, "lanes-small.log")
	w, err := b.startLaneWorker(sb, logPath)
	if err != nil {
		return err
	}
	res.bigJobs = sc(int(20*laneRate), b.scale)
	res.smallJobs = max(10, sc(int(laneRate), b.scale))
	t0 := time.Now()
	if err := enqueueFrom(ctx, b.redis, "big", laneSenders[0], 0, res.bigJobs); err != nil {
		w.stop(40 * time.Second)
		return err
	}
	time.Sleep(time.Until(t0.Add(2 * time.Second)))
	tSmall := time.Now()
	res.smallAt = tSmall.Sub(t0)
	if err := enqueueFrom(ctx, b.redis, "small", laneSenders[0], smallOffset, res.smallJobs); err != nil {
		w.stop(40 * time.Second)
		return err
	}
	// Wait for the small campaign's calls; the big one need not finish.
	deadline := time.Now().Add(time.Duration(float64(res.bigJobs+res.smallJobs)/laneRate*float64(time.Second)) + 30*time.Second)
	var werr error
	for {
		small := 0
		for _, c := range sb.sb.Calls() {
			if index(c.To) >= smallOffset {
				small++
			}
		}
		if small >= res.smallJobs {
			break
		}
		if time.Now().After(deadline) {
			werr = fmt.Errorf("only %d of the small campaign's %d calls arrived", small, res.smallJobs)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, calls, err := b.endLaneRun(w, sb, logPath, "lanes-small-calls.csv", t0, werr)
	res.outcomes2, res.warnings2 = log.outcomes, log.warnings
	if err != nil {
		return err
	}
	var small, big []sandbox.Call
	for _, c := range calls {
		if index(c.To) >= smallOffset {
			small = append(small, c)
		} else {
			big = append(big, c)
		}
	}
	if len(small) != res.smallJobs {
		return fmt.Errorf("%d calls for the small campaign's %d jobs", len(small), res.smallJobs)
	}
	first, last := small[0].Time, small[len(small)-1].Time
	res.smallFirst, res.smallDone = first.Sub(tSmall), last.Sub(tSmall)
	res.fairExpect = time.Duration(2 * float64(res.smallJobs) / laneRate * float64(time.Second))
	bigDone, during := 0, 0
	for _, c := range big {
		if c.Time.Before(tSmall) {
			res.bigBefore++
		}
		if !c.Time.After(last) {
			bigDone++
		}
		if !c.Time.Before(first) && !c.Time.After(last) {
			during++
		}
	}
	res.fifoExpect = time.Duration(float64(res.bigJobs-res.bigBefore+res.smallJobs) / laneRate * float64(time.Second))
	res.bigDoneFrac = float64(bigDone) / float64(res.bigJobs)
	res.smallShare = float64(len(small)) / float64(len(small)+during)
	if d := last.Sub(first).Seconds(); d > 0 {
		res.senderRate2 = float64(len(small)+during-1) / d
	}
	return nil
}

// makeIdleLanes creates n lanes (n campaigns over senders senders) each holding one task
// scheduled an hour ahead, written with asynq's own client into the lane and registered as the
// producer registers a lane: live, so workers serve it, with nothing due. (asynq's client does
// not write the namespace's due index; the upkeep's sweep adds the lane to it.)
func makeIdleLanes(ctx context.Context, r *redisServer, n, senders int) error {
	c := asynq.NewClient(r.connOpt())
	defer c.Close()
	led := store.New(r.rdb, queue, retention)
	return parallel(n, 8, func(i int) error {
		campaign := fmt.Sprintf("idle%05d", i)
		from := laneSenders[i%senders]
		p := payload(campaign, i)
		p.From = from
		data, err := job.Encode(p)
		if err != nil {
			return err
		}
		lane := led.LaneName(campaign, from)
		if _, err := c.EnqueueContext(ctx, asynq.NewTask(job.TaskType, data), asynq.Queue(lane), asynq.ProcessIn(time.Hour),
			asynq.MaxRetry(maxRetry), asynq.Retention(retention), asynq.TaskID(job.TaskID(p))); err != nil {
			return err
		}
		return led.RegisterLane(ctx, store.Lane{Name: lane, Campaign: campaign, Sender: from}, false)
	})
}

// enqueueFrom puts rows first..first+n-1 of campaign, sent from from, into its lane through the
// real producer.
func enqueueFrom(ctx context.Context, r *redisServer, campaign, from string, first, n int) error {
	p, err := producer.New(r.connOpt(), producer.Config{Queue: queue, DefaultFrom: from})
	if err != nil {
		return err
	}
	defer p.Close()
	s, err := p.Campaign(ctx, campaign, producer.ReadCSV(bytes.NewReader(campaignCSV(first, n))), producer.Options{}, nil)
	if err != nil {
		return err
	}
	if s.Enqueued != n {
		return fmt.Errorf("enqueue %s: %+v, want %d enqueued", campaign, s, n)
	}
	return nil
}

// endLaneRun stops a lanes run's worker, reads its log and the sandbox's calls (kept as a CSV
// named name in the work directory); waitErr is how the wait for the calls ended.
func (b *bench) endLaneRun(w *workerProc, sb *fakeKaleyra, logPath, name string, t0 time.Time, waitErr error) (workerLog, []sandbox.Call, error) {
	_, serr := w.stop(40 * time.Second)
	log := readWorkerLog(logPath)
	if err := errors.Join(waitErr, serr); err != nil {
		return log, nil, err
	}
	calls, err := sb.sortedCalls()
	if err != nil {
		return log, nil, err
	}
	writeCalls(filepath.Join(b.tmp, name), calls, t0)
	return log, calls, nil
}

// startLaneWorker starts `wabulk worker` at the lanes phase's rate and concurrency and waits
// for its "worker started" line.
func (b *bench) startLaneWorker(sb *fakeKaleyra, logPath string) (*workerProc, error) {
	return b.startWorker(sb, logPath, laneConc, laneRate)
}

// startWorker starts `wabulk worker` at concurrency conc and rate and waits for its "worker
// started" line.
func (b *bench) startWorker(sb *fakeKaleyra, logPath string, conc int, rate float64) (*workerProc, error) {
	w, err := startWorkerProc(b.bin, workerEnv(b.redis, sb, conc, rate), logPath)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for !hasLogLine(logPath, "worker started") {
		if time.Now().After(deadline) {
			w.stop(40 * time.Second)
			return nil, fmt.Errorf("no \"worker started\" in %s within 15 s", logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w, nil
}

func hasLogLine(path, msg string) bool {
	data, _ := os.ReadFile(path)
	return bytes.Contains(data, []byte(`"msg":"`+msg+`"`))
}

// workerLog is what the lanes phase reads from a worker's JSON log.
type workerLog struct {
	outcomes map[string]int // "send" lines by outcome
	warnings []string       // warn and error lines (first few, and how many in all)
}

func readWorkerLog(path string) workerLog {
	wl := workerLog{outcomes: map[string]int{}}
	data, _ := os.ReadFile(path)
	bad := 0
	for line := range strings.Lines(string(data)) {
		var e struct {
			Level   string `json:"level"`
			Msg     string `json:"msg"`
			Outcome string `json:"outcome"`
			Error   string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		if e.Msg == "send" {
			wl.outcomes[e.Outcome]++
		}
		if e.Level != "info" && e.Level != "debug" {
			bad++
			if len(wl.warnings) < 5 {
				wl.warnings = append(wl.warnings, strings.TrimSpace(fmt.Sprintf("%s: %s %s", e.Level, e.Msg, e.Error)))
			}
		}
	}
	if bad > len(wl.warnings) {
		wl.warnings = append(wl.warnings, fmt.Sprintf("… %d warn/error lines in all (%s)", bad, filepath.Base(path)))
	}
	return wl
}

// rateBetween is (k−1)/(last−first) over the k calls in [from, to) (see steadyRate), 0 when
// fewer than two.
func rateBetween(calls []sandbox.Call, from, to time.Time) float64 {
	rate, _, _ := rateIn(calls, from, to)
	return rate
}

// lowestAverage is the fewest calls in any window of length w starting at from + whole seconds
// inside [from, to), per second.
func lowestAverage(calls []sandbox.Call, from, to time.Time, w time.Duration) float64 {
	lowest := -1
	for t := from; !t.Add(w).After(to); t = t.Add(time.Second) {
		k := 0
		for _, c := range calls {
			if !c.Time.Before(t) && c.Time.Before(t.Add(w)) {
				k++
			}
		}
		if lowest < 0 || k < lowest {
			lowest = k
		}
	}
	if lowest < 0 {
		return math.NaN() // window shorter than w
	}
	return float64(lowest) / w.Seconds()
}

// writeCalls keeps a call log in the work directory (-keep) for a closer look: ms after t0,
// sender, recipient.
func writeCalls(path string, calls []sandbox.Call, t0 time.Time) {
	var w bytes.Buffer
	w.WriteString("ms,from,to\n")
	for _, c := range calls {
		fmt.Fprintf(&w, "%.3f,%s,%s\n", float64(c.Time.Sub(t0).Microseconds())/1000, c.From, c.To)
	}
	os.WriteFile(path, w.Bytes(), 0o644)
}
