// Package faults proves wabulk's guarantees against real processes: `wabulk worker` and
// `wabulk enqueue` binaries, real redis-servers that the tests kill and restart, and the
// sandbox standing in for Kaleyra. Each test is one fault of docs/guarantees.md.
package faults

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

const (
	testQueue = "whatsapp"
)

// world is one test's system: a redis-server, the sandbox, and what the test reads them with.
type world struct {
	*testkit.World
	t      *testing.T
	ledger *store.Ledger
}

func newWorld(t *testing.T, sb sandbox.Config, ro redistest.Options) *world {
	t.Helper()
	sb.Senders, sb.Balance = []string{testkit.Sender}, -1
	w := &world{World: testkit.NewWorld(t, ro, sb), t: t}
	w.ledger = store.New(w.RDB, testQueue, time.Hour)
	return w
}

// env is a worker's environment; later entries override earlier ones.
func (w *world) env(extra ...string) []string {
	return append([]string{
		"WABULK_REDIS_URL=" + w.Redis.URL,
		"WABULK_QUEUE=" + testQueue,
		"KALEYRA_SID=" + testkit.SID,
		"KALEYRA_API_KEY=" + testkit.APIKey,
		"KALEYRA_BASE_URL=" + w.Sandbox.URL,
		"KALEYRA_FROM=" + testkit.Sender,
		"WABULK_METRICS_ADDR=",
		"WABULK_RATE=100000",
		"WABULK_RETRY_BASE=100ms",
		"WABULK_RETRY_MAX=400ms",
		"WABULK_HTTP_TIMEOUT=3s",
		"WABULK_SHUTDOWN_TIMEOUT=10s",
	}, extra...)
}

func phone(series, i int) string { return fmt.Sprintf("+9198%02d%06d", series, i) }

// enqueue puts a campaign of n recipients phone(series, 0…n-1) in the queue through the
// producer (the Go API `wabulk enqueue` and `wabulk serve` share) and returns their TaskIDs.
func (w *world) enqueue(campaign string, series, n, maxRetry int) []string {
	w.t.Helper()
	p, err := producer.New(w.Redis.ConnOpt(w.t), producer.Config{Queue: testQueue, DefaultFrom: testkit.Sender, MaxRetry: maxRetry, Concurrency: 32})
	if err != nil {
		w.t.Fatal(err)
	}
	defer p.Close()
	var rows iter.Seq[producer.Row] = func(yield func(producer.Row) bool) {
		for i := range n {
			if !yield(producer.Row{Fields: job.Fields{To: phone(series, i), Type: "image",
				MediaLink: "https://example.com/a.png", Ref: "cust-" + strconv.Itoa(i), Ref1: "faults"}}) {
				return
			}
		}
	}
	var ids []string
	sum, err := p.Campaign(context.Background(), campaign, rows, producer.Options{}, func(o producer.Outcome) {
		ids = append(ids, o.TaskID)
	})
	if err != nil || sum.Enqueued != n {
		w.t.Fatalf("enqueue %s: %+v, %v", campaign, sum, err)
	}
	return ids
}

// waitFor polls cond every 20ms until it holds; the test fails when d passes first.
func (w *world) waitFor(what string, d time.Duration, cond func() bool) time.Duration {
	w.t.Helper()
	return testkit.Eventually(w.t, d, what, cond, func() string { return "queues: " + w.describeQueues() })
}

// queues are the asynq queues a campaign's jobs can be in: its lanes, as the namespace's lane
// registry lists them (producer.Producer enqueues into the lane of each (campaign, sender)).
func (w *world) queues(campaign string) ([]string, error) {
	return w.ledger.CampaignLanes(context.Background(), campaign)
}

// taskQueue is the asynq queue of a TaskID: the lane it names.
func (w *world) taskQueue(id string) string {
	lane, _ := w.ledger.LaneOfTask(id)
	return lane
}

// queueInfo sums asynq's counts over the campaign's queues that exist (see queues); Queue
// names them. Paused when any of them is.
func (w *world) queueInfo(campaign string) (asynq.QueueInfo, error) {
	names, err := w.queues(campaign)
	if err != nil {
		return asynq.QueueInfo{}, err
	}
	known, err := w.Insp.Queues()
	if err != nil {
		return asynq.QueueInfo{}, err
	}
	sum := asynq.QueueInfo{Queue: strings.Join(names, ",")}
	for _, n := range names {
		if !slices.Contains(known, n) {
			continue
		}
		qi, err := w.Insp.GetQueueInfo(n)
		if err != nil {
			return asynq.QueueInfo{}, err
		}
		sum.Size += qi.Size
		sum.Pending += qi.Pending
		sum.Active += qi.Active
		sum.Scheduled += qi.Scheduled
		sum.Retry += qi.Retry
		sum.Archived += qi.Archived
		sum.Completed += qi.Completed
		sum.Processed += qi.Processed
		sum.Failed += qi.Failed
		sum.Paused = sum.Paused || qi.Paused
	}
	return sum, nil
}

// describeQueues lists every queue of the namespace (the lanes) with its counts, for a failure
// message.
func (w *world) describeQueues() string {
	known, err := w.Insp.Queues()
	if err != nil {
		return err.Error()
	}
	slices.Sort(known)
	var b strings.Builder
	for _, n := range known {
		if !strings.HasPrefix(n, testQueue+":") {
			continue
		}
		qi, err := w.Insp.GetQueueInfo(n)
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: %v", n, err)
			continue
		}
		fmt.Fprintf(&b, "\n  %s: pending %d active %d scheduled %d retry %d archived %d completed %d paused %v",
			n, qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived, qi.Completed, qi.Paused)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// counts reads the ledger; zero counts while Redis is down.
func (w *world) counts(campaign string) store.Counts {
	c, _ := w.ledger.Counts(context.Background(), campaign)
	return c
}

// finished: every job of the campaign is completed or dead in the ledger, and asynq holds
// nothing pending, active, scheduled or waiting for a retry in the campaign's lanes.
func (w *world) finished(campaign string, n int) func() bool {
	return func() bool {
		c := w.counts(campaign)
		if c.Completed+c.Dead != int64(n) {
			return false
		}
		qi, err := w.queueInfo(campaign)
		return err == nil && qi.Pending == 0 && qi.Active == 0 && qi.Scheduled == 0 && qi.Retry == 0
	}
}

// checkEveryJobEnded asserts the end state of a campaign in both records.
func (w *world) checkEveryJobEnded(campaign string, ids []string) {
	w.t.Helper()
	c := w.counts(campaign)
	if c.Completed+c.Dead != int64(len(ids)) || c.Active != 0 || c.Retry != 0 || c.Pending != 0 {
		w.t.Errorf("ledger counts %+v: want completed+dead = %d and nothing else", c, len(ids))
	}
	for _, id := range ids {
		ti, err := w.Insp.GetTaskInfo(w.taskQueue(id), id)
		if err != nil {
			w.t.Errorf("task %s: %v", id, err)
			continue
		}
		if ti.State != asynq.TaskStateCompleted && ti.State != asynq.TaskStateArchived {
			w.t.Errorf("task %s is %v, want completed or archived", id, ti.State)
		}
	}
}

// duplicates returns how many recipients the sandbox accepted more than once, and the extra sends.
func (w *world) duplicates() (recipients int, extra int64) {
	st := w.Sandbox.Stats()
	for _, to := range st.Duplicates() {
		recipients++
		extra += st.AcceptedTo[to] - 1
	}
	return recipients, extra
}

// get returns the status and body of a GET, or 0 when nothing answered.
func get(url string) (int, string) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startWorker runs `wabulk worker` with env.
func startWorker(t *testing.T, env []string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, env, "worker")
}

// logsSay counts the lines of a process's stderr that contain every one of parts.
func logsSay(p *proctest.Proc, parts ...string) int {
	n := 0
	for _, line := range strings.Split(p.Stderr(), "\n") {
		ok := true
		for _, s := range parts {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// redistestOptions is the Redis of tests that do not restart it.
func redistestOptions() redistest.Options { return redistest.Options{} }
