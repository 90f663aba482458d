package faults

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
)

// Redis (AOF on) crashes mid-campaign and comes back: the workers keep running, report not
// ready while it is gone, reconnect, and finish the campaign with nothing lost.
func TestRedisRestartMidCampaign(t *testing.T) {
	const jobs, concurrency = 300, 10
	w := newWorld(t, sandbox.Config{Latency: 100 * time.Millisecond}, redistest.Options{TCP: true, AOF: true})
	ids := w.enqueue("rr", 2, jobs, 8)
	var procs []*proctest.Proc
	var readyz []string
	for range 2 {
		addr := proctest.FreeAddr(t)
		procs = append(procs, startWorker(t, w.env("WABULK_CONCURRENCY="+strconv.Itoa(concurrency), "WABULK_METRICS_ADDR="+addr)))
		readyz = append(readyz, "http://"+addr+"/readyz")
	}
	for _, u := range readyz {
		w.waitFor("/readyz 200", 15*time.Second, func() bool { c, _ := get(u); return c == 200 })
	}
	w.waitFor("a fifth of the campaign", 30*time.Second, func() bool { return w.counts("rr").Completed >= jobs/5 })

	down := time.Now()
	w.Redis.Stop() // SIGKILL: what was fsynced survives (appendfsync always)
	for _, u := range readyz {
		w.waitFor("/readyz 503 while Redis is down", 10*time.Second, func() bool { c, _ := get(u); return c == 503 })
	}
	notReady := time.Since(down)
	w.Redis.Restart(t)
	up := time.Now()
	for _, u := range readyz {
		w.waitFor("/readyz 200 after the restart", 15*time.Second, func() bool { c, _ := get(u); return c == 200 })
	}
	ready := time.Since(up)
	// A task whose dequeue reached Redis but whose reply died with the connection is held by no
	// worker: asynq's recoverer requeues it once its lease is 30 s past due, checking once a
	// minute, so such a run takes 60–120 s (asynq's constants; seen in about one run in three).
	w.waitFor("every job to end", 150*time.Second, w.finished("rr", jobs))
	t.Logf("Redis down %v (both workers not ready within %v), ready again %v after it came back; campaign finished %v after the restart",
		up.Sub(down).Round(time.Millisecond), notReady.Round(time.Millisecond), ready.Round(time.Millisecond), time.Since(up).Round(time.Millisecond))

	w.checkEveryJobEnded("rr", ids)
	if c := w.counts("rr"); c.Completed != jobs {
		t.Errorf("completed %d, want %d", c.Completed, jobs)
	}
	if st := w.Sandbox.Stats(); int64(len(st.AcceptedTo)) != jobs {
		t.Errorf("sandbox accepted %d distinct recipients, want %d: a job was lost", len(st.AcceptedTo), jobs)
	}
	recipients, extra := w.duplicates()
	t.Logf("duplicates across the restart: %d recipients, %d extra sends", recipients, extra)
	// A send whose sent marker could not be written while Redis was down (the handler retries
	// for up to 20 s, markerPatience) may go out again: at most the jobs in flight.
	if extra > 2*concurrency {
		t.Errorf("%d duplicate sends, more than the %d jobs in flight", extra, 2*concurrency)
	}
	for i, p := range procs {
		if p.Exited() {
			t.Errorf("worker %d exited while Redis was down: %s", i, p.Stderr())
		}
	}
	// `wabulk serve` through a Redis restart is tested in process, in internal/httpapi.
}

// Redis unreachable at start: `wabulk worker` and `wabulk enqueue` exit non-zero at once with a
// message that says so, and leave nothing behind in Redis.
func TestRedisUnreachableAtStart(t *testing.T) {
	rs := redistest.StartWith(t, redistest.Options{TCP: true, AOF: true})
	rs.Stop() // the address is now closed; the AOF directory stays
	// The URL carries a password: it must not show in the error either.
	const redisPassword = "R3dis-Pa55word"
	url := strings.Replace(rs.URL, "redis://", "redis://:"+redisPassword+"@", 1)
	env := []string{"WABULK_REDIS_URL=" + url, "WABULK_QUEUE=" + testQueue, "KALEYRA_SID=" + testkit.SID,
		"KALEYRA_API_KEY=" + testkit.APIKey, "KALEYRA_BASE_URL=http://127.0.0.1:1", "KALEYRA_FROM=" + testkit.Sender,
		"WABULK_METRICS_ADDR="}

	start := time.Now()
	_, stderr, code := proctest.Run(t, env, nil, "worker")
	if code == 0 || !strings.Contains(stderr, "Redis is unreachable") || !strings.Contains(stderr, rs.Addr) {
		t.Errorf("worker: exit %d, stderr %q; want non-zero and a message naming Redis and its address", code, stderr)
	}
	if strings.Contains(stderr, testkit.APIKey) || strings.Contains(stderr, redisPassword) {
		t.Error("worker's error output holds the API key or the Redis password")
	}
	t.Logf("worker gave up after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(stderr)))

	csv := filepath.Join(t.TempDir(), "c.csv")
	os.WriteFile(csv, []byte("to,ref\n+919812345678,a\n+919812345679,b\n"), 0o600)
	stdout, stderr, code := proctest.Run(t, env, nil, "enqueue", "--campaign", "down", "--type", "image", "--media-id", "42", csv)
	if code != 2 || !strings.Contains(strings.ToLower(stderr+stdout), "redis") {
		t.Errorf("enqueue: exit %d, stdout %q, stderr %q; want 2 and a message about Redis", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, testkit.APIKey) || strings.Contains(stdout+stderr, redisPassword) {
		t.Error("enqueue's output holds the API key or the Redis password")
	}
	t.Logf("enqueue: exit %d: %s", code, strings.TrimSpace(lastLine(stderr)))

	rs.Restart(t)
	n, err := rs.Client(t).DBSize(context.Background()).Result()
	if err != nil || n != 0 {
		t.Errorf("Redis holds %d keys after the failed starts (err %v), want 0", n, err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
