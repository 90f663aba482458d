package faults

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
)

// controlBound is how long after a control returns a call of what it stopped may still start
// (issue: "no Kaleyra call for X starts more than 1 s later").
const controlBound = time.Second

// cli runs a wabulk command against the world's Redis and fails the test unless it exits 0.
func (w *world) cli(args ...string) string {
	w.t.Helper()
	out, errOut, code := proctest.Run(w.t, w.env(), nil, args...)
	if code != 0 {
		w.t.Fatalf("wabulk %s: exit %d: %s %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// callsOf returns the arrival times of the sandbox's calls to recipients of a series.
func (w *world) callsOf(series int) []time.Time {
	prefix := phone(series, 0)[:7]
	var out []time.Time
	for _, c := range w.Sandbox.Calls() {
		if strings.HasPrefix(c.To, prefix) {
			out = append(out, c.Time)
		}
	}
	return out
}

// lateCalls returns the calls of a series that arrived more than controlBound after at.
func (w *world) lateCalls(series int, at time.Time) []time.Duration {
	var late []time.Duration
	for _, c := range w.callsOf(series) {
		if d := c.Sub(at); d > controlBound {
			late = append(late, d)
		}
	}
	return late
}

// startWorkers starts n worker processes with the rate and concurrency, stopped with SIGTERM
// when the test ends.
func (w *world) startWorkers(n int, rate string, extra ...string) {
	w.t.Helper()
	for range n {
		p := startWorker(w.t, w.env(append([]string{"WABULK_RATE=" + rate, "WABULK_CONCURRENCY=50",
			"WABULK_RETRY_BASE=1s", "WABULK_RETRY_MAX=2s"}, extra...)...))
		w.t.Cleanup(func() { p.Signal(w.t, syscall.SIGTERM); p.Wait(w.t, 20*time.Second) })
	}
}

// TestPauseAndCancelStopTheSendsWithinOneSecond: two campaigns share a sender; after `wabulk
// campaign pause A` returns no call of A starts more than 1 s later, and the same for `cancel
// B`, at sender rates 1/s, 10/s and 80/s with WABULK_CONCURRENCY=50 and one or three workers.
// Resume then sends each of A's recipients exactly once; B's counts add up to its enqueued
// total with the rest cancelled.
func TestPauseAndCancelStopTheSendsWithinOneSecond(t *testing.T) {
	for _, rate := range []int{1, 10, 80} {
		for _, workers := range []int{1, 3} {
			t.Run(fmt.Sprintf("rate %d/s, %d workers", rate, workers), func(t *testing.T) {
				t.Parallel()
				// Calls on the wire take 50 ms, so a control can land while some are in flight.
				w := newWorld(t, sandbox.Config{Latency: 50 * time.Millisecond}, redistestOptions())
				n := max(12, rate*6) // each campaign lasts ≥ 6 s at half the rate
				w.enqueue("ctl-a", 61, n, 3)
				w.enqueue("ctl-b", 62, n, 3)
				w.startWorkers(workers, fmt.Sprint(rate))
				started := min(3, rate)
				w.waitFor("both campaigns sending", 20*time.Second, func() bool {
					return len(w.callsOf(61)) >= started && len(w.callsOf(62)) >= started
				})
				w.cli("campaign", "pause", "ctl-a")
				paused := time.Now()
				w.cli("campaign", "cancel", "ctl-b")
				cancelled := time.Now()
				time.Sleep(controlBound + time.Second)
				if late := w.lateCalls(61, paused); len(late) > 0 {
					t.Errorf("%d calls of the paused campaign started more than %v after the pause: %v", len(late), controlBound, late)
				}
				if late := w.lateCalls(62, cancelled); len(late) > 0 {
					t.Errorf("%d calls of the cancelled campaign started more than %v after the cancel: %v", len(late), controlBound, late)
				}
				if got := len(w.callsOf(61)); got >= n {
					t.Fatalf("all %d of the paused campaign were sent before the pause: the test proves nothing", n)
				}
				b := w.counts("ctl-b")
				if b.Completed+b.Dead+b.Cancelled != int64(n) || b.Cancelled == 0 || b.Pending+b.Active+b.Retry != 0 {
					t.Errorf("cancelled campaign's counts %+v: want completed+dead+cancelled = %d with some cancelled", b, n)
				}
				if got := len(w.callsOf(62)); int64(got) != b.Completed {
					t.Errorf("cancelled campaign: %d calls, %d counted sent", got, b.Completed)
				}
				w.cli("campaign", "resume", "ctl-a")
				w.waitFor("the paused campaign to finish after resume", time.Duration(2*n/rate+20)*time.Second, w.finished("ctl-a", n))
				if got := len(w.callsOf(61)); got != n {
					t.Errorf("the resumed campaign made %d calls for %d recipients", got, n)
				}
				if r, extra := w.duplicates(); r != 0 {
					t.Errorf("%d recipients sent twice (%d extra)", r, extra)
				}
			})
		}
	}
}

// TestQueuePauseHoldsEveryLaneIncludingNewOnes: `wabulk queue pause` stops a running campaign
// within 1 s and holds a campaign enqueued after it until `queue resume`.
func TestQueuePauseHoldsEveryLaneIncludingNewOnes(t *testing.T) {
	w := newWorld(t, sandbox.Config{Latency: 20 * time.Millisecond}, redistestOptions())
	w.enqueue("qp-run", 63, 100, 3)
	w.startWorkers(1, "10")
	w.waitFor("the first sends", 20*time.Second, func() bool { return len(w.callsOf(63)) >= 5 })
	w.cli("queue", "pause")
	paused := time.Now()
	w.enqueue("qp-new", 64, 5, 3)
	time.Sleep(controlBound + 2*time.Second)
	if late := w.lateCalls(63, paused); len(late) > 0 {
		t.Errorf("%d calls started more than %v after queue pause: %v", len(late), controlBound, late)
	}
	if got := len(w.callsOf(64)); got != 0 {
		t.Errorf("a campaign enqueued after queue pause made %d calls while paused", got)
	}
	w.cli("queue", "resume")
	w.waitFor("the new campaign to be sent after resume", 20*time.Second, w.finished("qp-new", 5))
}

// TestSuppressAddStopsQueuedSendsWithinOneSecond: numbers added to the suppression list while
// their jobs wait in a running campaign are not sent to from 1 s after `suppress add` returns;
// they count as suppressed and the counts add up.
func TestSuppressAddStopsQueuedSendsWithinOneSecond(t *testing.T) {
	w := newWorld(t, sandbox.Config{}, redistestOptions())
	const n = 60
	w.enqueue("sup-run", 65, n, 3)
	w.startWorkers(1, "10")
	w.waitFor("the first sends", 20*time.Second, func() bool { return len(w.callsOf(65)) >= 3 })
	// The last ten recipients: still waiting (a lane is sent in order).
	var nums []string
	for i := n - 10; i < n; i++ {
		nums = append(nums, phone(65, i))
	}
	w.cli(append([]string{"suppress", "add"}, nums...)...)
	added := time.Now()
	w.waitFor("the campaign to finish", 30*time.Second, func() bool {
		c := w.counts("sup-run")
		return c.Completed+c.Dead+c.Suppressed == n && c.Active+c.Pending+c.Retry == 0
	})
	for _, c := range w.Sandbox.Calls() {
		for _, s := range nums {
			if c.To == s && c.Time.Sub(added) > controlBound {
				t.Errorf("%s was called %v after it was suppressed", s, c.Time.Sub(added))
			}
		}
	}
	c := w.counts("sup-run")
	if c.Suppressed < 1 || c.Completed+c.Suppressed != n {
		t.Errorf("counts %+v: want the suppressed ones counted and completed+suppressed = %d", c, n)
	}
}

// TestActiveStaysWithinConcurrencyAndHoldsNoJobForTheLimiter: at 1/s with
// WABULK_CONCURRENCY=50, a worker holds no job waiting for its sender's rate: its lane's active
// jobs stay at the calls on the wire (one at this rate), not 50.
func TestActiveStaysWithinConcurrencyAndHoldsNoJobForTheLimiter(t *testing.T) {
	w := newWorld(t, sandbox.Config{Latency: 100 * time.Millisecond}, redistestOptions())
	w.enqueue("act", 66, 40, 3)
	w.startWorkers(1, "1")
	w.waitFor("the first sends", 20*time.Second, func() bool { return len(w.callsOf(66)) >= 2 })
	most := 0
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		qi, err := w.queueInfo("act")
		if err == nil {
			most = max(most, qi.Active)
		}
	}
	if most > 2 {
		t.Errorf("the lane showed up to %d active jobs at 1 msg/s: jobs wait outside Redis", most)
	}
}

// TestSmallCampaignsArrivingBehindABigOneSendWithinOneRound: a big campaign at 10/s, then 20
// small ones on the same sender arriving over 2 s: each small campaign's first send comes within
// 3 s of its enqueue (a round of 21 lanes at 10/s takes 2.1 s).
func TestSmallCampaignsArrivingBehindABigOneSendWithinOneRound(t *testing.T) {
	w := newWorld(t, sandbox.Config{}, redistestOptions())
	w.enqueue("big", 70, 400, 3)
	w.startWorkers(1, "10")
	w.waitFor("the big campaign sending", 20*time.Second, func() bool { return len(w.callsOf(70)) >= 10 })
	enqueued := make([]time.Time, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		time.Sleep(100 * time.Millisecond)
		enqueued[i] = time.Now()
		wg.Go(func() { w.enqueue(fmt.Sprintf("small-%02d", i), 71+i, 5, 3) })
	}
	wg.Wait()
	w.waitFor("every small campaign's first send", 30*time.Second, func() bool {
		for i := range 20 {
			if len(w.callsOf(71+i)) == 0 {
				return false
			}
		}
		return true
	})
	for i := range 20 {
		first := w.callsOf(71 + i)[0]
		for _, c := range w.callsOf(71 + i) {
			if c.Before(first) {
				first = c
			}
		}
		if d := first.Sub(enqueued[i]); d > 3*time.Second {
			t.Errorf("small campaign %d: first send %v after its enqueue, want ≤ 3s", i, d.Round(time.Millisecond))
		}
	}
}

// TestLoweredSenderRateHoldsWithinOneSecond: a campaign sending at 80/s; `wabulk sender rate`
// lowers its sender to 5/s; from 1 s after the command returns, no 1 s window holds more than
// the new rate's bound (rate + burst − 1 = 5) of calls, plus one for the moments between a
// grant and its call's arrival at the sandbox, which are not all equal.
func TestLoweredSenderRateHoldsWithinOneSecond(t *testing.T) {
	w := newWorld(t, sandbox.Config{}, redistestOptions())
	w.enqueue("slow-down", 67, 600, 3)
	w.startWorkers(2, "80")
	w.waitFor("the campaign sending", 20*time.Second, func() bool { return len(w.callsOf(67)) >= 80 })
	w.cli("sender", "rate", testkit.Sender, "5")
	lowered := time.Now()
	time.Sleep(controlBound + 4*time.Second)
	var after []time.Time
	for _, c := range w.callsOf(67) {
		if c.Sub(lowered) > controlBound {
			after = append(after, c)
		}
	}
	if len(after) == 0 {
		t.Fatal("no call after the change: the test proves nothing")
	}
	for i := range after {
		n := 0
		for _, c := range after[i:] {
			if c.Sub(after[i]) < time.Second {
				n++
			}
		}
		if n > 6 {
			t.Fatalf("%d calls in the second from %v after the rate was lowered to 5/s", n, after[i].Sub(lowered).Round(time.Millisecond))
		}
	}
}
