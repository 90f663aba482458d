package faults

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
)

// The soak (make soak): 200,000 messages, 3 real workers, 5 % WA500 and 0.5 % WA400 from the
// sandbox, Redis (AOF) killed and restarted once and one worker killed with SIGKILL once, with
// asynq's real lease timing. The counts must add up exactly: sent + dead = unique recipients.
func TestSoak200kWithRedisRestartAndWorkerKill(t *testing.T) {
	if os.Getenv("WABULK_SOAK") == "" {
		t.Skip("set WABULK_SOAK=1 (make soak)")
	}
	const jobs, workers = 200_000, 3
	w := newWorld(t, sandbox.Config{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Seed: 9,
		Rates: map[string]float64{"WA500": 0.05, "WA400": 0.005}}, redistest.Options{TCP: true, AOF: true})
	start := time.Now()
	w.enqueue("soak", 50, jobs, 8)
	t.Logf("enqueued %d in %v", jobs, time.Since(start).Round(time.Second))

	env := w.env("WABULK_CONCURRENCY=50")
	var procs []*proctest.Proc
	for range workers {
		procs = append(procs, startWorker(t, env))
	}
	progress := func(frac float64) func() bool {
		return func() bool { c := w.counts("soak"); return float64(c.Completed+c.Dead) >= frac*jobs }
	}
	w.waitFor("a quarter", 30*time.Minute, progress(0.25))
	down := time.Now()
	w.Redis.Stop()
	time.Sleep(2 * time.Second) // a deliberate 2 s outage, not a wait for a condition
	w.Redis.Restart(t)
	t.Logf("Redis restarted at %v (down %v)", time.Since(start).Round(time.Second), time.Since(down).Round(time.Millisecond))

	w.waitFor("half", 30*time.Minute, progress(0.5))
	procs[0].Signal(t, syscall.SIGKILL)
	procs[0].Wait(t, 10*time.Second)
	killedAt := time.Now()
	procs[0] = startWorker(t, env)
	t.Logf("worker killed and restarted at %v", time.Since(start).Round(time.Second))

	w.waitFor("every job to end", 40*time.Minute, w.finished("soak", jobs))
	c := w.counts("soak")
	st := w.Sandbox.Stats()
	recipients, extra := w.duplicates()
	t.Logf("done in %v (%v after the kill): sent %d + dead %d = %d of %d; dead by code %v; retries %d; sandbox calls %d; duplicates: %d recipients, %d extra sends",
		time.Since(start).Round(time.Second), time.Since(killedAt).Round(time.Second), c.Completed, c.Dead, c.Completed+c.Dead, jobs,
		c.DeadCodes, c.Retries, st.Received, recipients, extra)
	if c.Completed+c.Dead != jobs {
		t.Errorf("sent %d + dead %d != %d unique recipients", c.Completed, c.Dead, jobs)
	}
	// Every job the ledger counts sent was accepted. A job Kaleyra accepted just before a fault,
	// before its marker was written, is sent again (the sent-twice window); when that second send
	// is refused (WA400) it ends dead although accepted once. Both come from the jobs in flight at
	// the two faults.
	acceptedDead := int64(len(st.AcceptedTo)) - c.Completed
	t.Logf("accepted once, then dead-lettered on the re-send: %d", acceptedDead)
	if acceptedDead < 0 {
		t.Errorf("the ledger counts %d sent, the sandbox accepted %d distinct recipients", c.Completed, len(st.AcceptedTo))
	}
	if extra+acceptedDead > 2*50 {
		t.Errorf("%d duplicate sends and %d accepted-then-dead jobs, more than the jobs in flight at the two faults (2 × 50)",
			extra, acceptedDead)
	}
}
