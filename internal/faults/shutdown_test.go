package faults

import (
	"syscall"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
)

// stopWorker sends SIGTERM and checks the process exits 0 within the shutdown timeout.
func stopWorker(t *testing.T, w *world, p interface {
	Signal(testing.TB, syscall.Signal)
	Wait(testing.TB, time.Duration) int
}, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, timeout+5*time.Second); code != 0 {
		t.Errorf("worker exited %d after SIGTERM, want 0", code)
	}
	took := time.Since(start)
	if took > timeout {
		t.Errorf("worker took %v to stop, more than its shutdown timeout %v", took, timeout)
	}
	return took
}

// checkExactlyOnce: every recipient of the campaign was accepted exactly once.
func checkExactlyOnce(t *testing.T, w *world, series, n int) {
	t.Helper()
	st := w.Sandbox.Stats()
	for i := range n {
		if got := st.AcceptedTo[phone(series, i)]; got != 1 {
			t.Errorf("%s accepted %d times, want exactly 1", phone(series, i), got)
		}
	}
}

// SIGTERM while jobs wait for the rate limiter: the process exits 0 at once, the waiting jobs go
// back to the queue without using a retry, and the next worker sends each exactly once.
func TestSIGTERMDuringRateLimitWait(t *testing.T) {
	const jobs = 20
	w := newWorld(t, sandbox.Config{}, redistestOptions())
	ids := w.enqueue("rlwait", 3, jobs, 8)
	p := startWorker(t, w.env("WABULK_RATE=1", "WABULK_BURST=1", "WABULK_CONCURRENCY=10", "WABULK_SHUTDOWN_TIMEOUT=5s"))
	w.waitFor("two sends at 1/s", 15*time.Second, func() bool { return w.Sandbox.Stats().Accepted >= 2 })
	took := stopWorker(t, w, p, 5*time.Second)
	sentBefore := w.counts("rlwait").Completed
	qi, err := w.queueInfo("rlwait")
	if err != nil {
		t.Fatal(err)
	}
	if qi.Active != 0 || int64(qi.Pending+qi.Retry+qi.Completed) != jobs {
		t.Errorf("after the stop: %+v; want no active job and pending+retry+completed = %d", qi, jobs)
	}
	t.Logf("SIGTERM with %d jobs waiting for the limiter: exit 0 in %v; %d sent before, %d back in the queue (%d pending, %d retry)",
		jobs-int(sentBefore), took.Round(time.Millisecond), sentBefore, qi.Pending+qi.Retry, qi.Pending, qi.Retry)

	startWorker(t, w.env("WABULK_CONCURRENCY=10"))
	w.waitFor("the rest on the next start", 30*time.Second, w.finished("rlwait", jobs))
	w.checkEveryJobEnded("rlwait", ids)
	checkExactlyOnce(t, w, 3, jobs)
	if c := w.counts("rlwait"); c.Retries != 0 || c.Completed != jobs {
		t.Errorf("counts %+v: want %d completed and no retry used by the interrupted waits", c, jobs)
	}
}

// SIGTERM while Kaleyra takes 2 s to answer: the calls in flight finish (accepted once, recorded
// as sent), the process exits 0 within the shutdown timeout, and the rest run on the next start.
func TestSIGTERMDuringSlowKaleyraCall(t *testing.T) {
	const jobs, concurrency = 10, 5
	w := newWorld(t, sandbox.Config{Latency: 2 * time.Second}, redistestOptions())
	ids := w.enqueue("slow", 4, jobs, 8)
	p := startWorker(t, w.env("WABULK_CONCURRENCY=5", "WABULK_SHUTDOWN_TIMEOUT=10s"))
	w.waitFor("5 calls in flight", 15*time.Second, func() bool { return w.Sandbox.Stats().Received == concurrency })
	took := stopWorker(t, w, p, 10*time.Second)
	c := w.counts("slow")
	if c.Completed != concurrency || c.Active != 0 {
		t.Errorf("after the stop: %+v; want the %d calls in flight completed and none active", c, concurrency)
	}
	if got := w.Sandbox.Stats().Received; got != concurrency {
		t.Errorf("sandbox received %d calls, want %d: the stopping worker took new jobs", got, concurrency)
	}
	t.Logf("SIGTERM with %d 2 s calls in flight: exit 0 in %v, %d completed", concurrency, took.Round(time.Millisecond), c.Completed)

	startWorker(t, w.env("WABULK_CONCURRENCY=5"))
	w.waitFor("the rest on the next start", 30*time.Second, w.finished("slow", jobs))
	w.checkEveryJobEnded("slow", ids)
	checkExactlyOnce(t, w, 4, jobs)
}
