package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

const cancelSender = "+919000000001"

// cancelTasks makes n jobs of campaign c, recipient i with refs r<i>, x<i> and y<i>.
func cancelTasks(t testing.TB, c string, from, n int) []Task {
	t.Helper()
	tasks := make([]Task, 0, n)
	for i := from; i < from+n; i++ {
		p := job.Payload{V: job.Version, Campaign: c, From: cancelSender, To: fmt.Sprintf("+9198%08d", i), Type: "image",
			MediaLink: "https://example.com/a.png", Ref: "r" + strconv.Itoa(i), Ref1: "x" + strconv.Itoa(i), Ref2: "y" + strconv.Itoa(i),
			WASource: job.DefaultSource}
		b, err := job.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, Task{ID: job.TaskID(p), Payload: b})
	}
	return tasks
}

// declareAndEnqueue puts tasks in campaign c's lane as the producer does and returns the lane.
func declareAndEnqueue(t testing.TB, l *Ledger, c string, tasks []Task) string {
	t.Helper()
	ctx := context.Background()
	ln := Lane{Campaign: c, Sender: cancelSender}
	if err := l.DeclareLane(ctx, ln, false); err != nil {
		t.Fatal(err)
	}
	lane := l.LaneName(c, cancelSender)
	if _, _, err := l.Enqueuer(job.TaskType, 3).Enqueue(ctx, lane, tasks, true); err != nil {
		t.Fatal(err)
	}
	if err := l.RegisterLane(ctx, ln, false); err != nil {
		t.Fatal(err)
	}
	return lane
}

// reportStates returns the report's state and refs per recipient, failing on a recipient listed twice.
func reportStates(t *testing.T, l *Ledger, c string) map[string]ReportRow {
	t.Helper()
	rows := map[string]ReportRow{}
	err := l.Report(context.Background(), c, func(r ReportRow) error {
		if _, dup := rows[r.To]; dup {
			t.Errorf("%s listed twice: %+v", r.To, r)
		}
		rows[r.To] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestCancelledRecipientsAreReportedOnce: a campaign partly sent by an asynq server that does
// what the worker does (Begin, then Sent; a cancelled job completed unsent), then cancelled with
// a job pending, one scheduled, one retrying and one in the server's hands: the report lists
// every recipient exactly once, the sent ones accepted with their message id and the others
// cancelled with their refs; enqueueing a cancelled job again sends nothing and lists it once.
func TestCancelledRecipientsAreReportedOnce(t *testing.T) {
	ctx := context.Background()
	rs := redistest.Start(t)
	l := New(rs.Client(t), "whatsapp", time.Hour)
	const n, sent = 12, 4
	tasks := cancelTasks(t, "c", 0, n)
	lane := declareAndEnqueue(t, l, "c", tasks)
	// One more job scheduled an hour ahead, counted as the producer counts it.
	sched := cancelTasks(t, "c", n, 1)[0]
	cl := asynq.NewClient(rs.ConnOpt(t))
	defer cl.Close()
	if _, err := cl.Enqueue(asynq.NewTask(job.TaskType, sched.Payload), asynq.Queue(lane), asynq.TaskID(sched.ID),
		asynq.ProcessIn(time.Hour), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	l.rdb.HIncrBy(ctx, key(lane, "counts"), "enqueued", 1)

	// The first job fails once (and waits an hour to be retried); the next `sent` are sent; the
	// one after is held until the cancel is in.
	retryID := tasks[0].ID
	var arrived, refused atomic.Int64
	gate := make(chan struct{}, n)
	srv := asynq.NewServer(rs.ConnOpt(t), asynq.Config{Concurrency: 1, Queues: map[string]int{lane: 1},
		TaskCheckInterval: 20 * time.Millisecond, ShutdownTimeout: time.Second,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour }})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if id == retryID {
			if err := l.Retry(ctx, lane, id); err != nil {
				return err
			}
			return errors.New("transient")
		}
		arrived.Add(1)
		<-gate
		_, already, err := l.Begin(ctx, lane, id)
		if errors.Is(err, ErrCancelled) {
			refused.Add(1)
			return nil // the worker completes it unsent
		}
		if err != nil || already {
			return err
		}
		return l.Sent(ctx, lane, id, []byte(`{"messages":[{"id":"wamid.`+id[len(id)-4:]+`"}]}`))
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for range sent {
		gate <- struct{}{}
	}
	testkit.Eventually(t, 10*time.Second, "the sends and one more job taken", func() bool { return arrived.Load() == sent+1 })
	if c := l.mustCountsOf(t, "c"); c.Completed != sent || c.Retry != 1 || c.Active != 1 {
		t.Fatalf("before the cancel: %+v", c)
	}
	if first, err := l.CancelCampaign(ctx, "c"); err != nil || !first {
		t.Fatalf("cancel: %v %v", first, err)
	}
	// Let the held job go on: its Begin sees the cancel; asynq then completes it.
	release := func(k int64) {
		t.Helper()
		gate <- struct{}{}
		testkit.Eventually(t, 10*time.Second, "the held job refused", func() bool { return refused.Load() == k })
		testkit.Eventually(t, 10*time.Second, "asynq to complete the refused job", func() bool {
			n, _ := l.Backlog(ctx, lane)
			return n == 0
		})
	}
	release(1)

	check := func(when string) {
		t.Helper()
		rows := reportStates(t, l, "c")
		if len(rows) != n+1 {
			t.Errorf("%s: %d rows for %d recipients", when, len(rows), n+1)
		}
		accepted, cancelled := 0, 0
		for i := range n + 1 {
			to := fmt.Sprintf("+9198%08d", i)
			r := rows[to]
			switch r.State {
			case ReportAccepted:
				accepted++
				if r.MessageID == "" || r.Ref != "r"+strconv.Itoa(i) {
					t.Errorf("%s: sent row %+v", when, r)
				}
			case ReportCancelled:
				cancelled++
				if r.Ref != "r"+strconv.Itoa(i) || r.Ref1 != "x"+strconv.Itoa(i) || r.Ref2 != "y"+strconv.Itoa(i) || r.UpdatedAt.IsZero() {
					t.Errorf("%s: cancelled row %+v", when, r)
				}
			default:
				t.Errorf("%s: %s is %q", when, to, r.State)
			}
		}
		if accepted != sent || cancelled != n+1-sent {
			t.Errorf("%s: %d accepted, %d cancelled; want %d and %d", when, accepted, cancelled, sent, n+1-sent)
		}
		if c := l.mustCountsOf(t, "c"); c.Completed != sent || c.Cancelled != int64(n+1-sent) || c.Pending+c.Active+c.Retry != 0 {
			t.Errorf("%s: counts %+v", when, c)
		}
	}
	check("after the cancel")

	// Enqueueing again is refused; a producer that raced the cancel and wrote a cancelled job
	// again gets it refused by the worker's check: nothing more is sent, and it is listed once.
	if err := l.CheckEnqueue(ctx, "c"); !errors.Is(err, ErrCampaignCancelled) {
		t.Fatalf("CheckEnqueue after the cancel: %v", err)
	}
	if added, _, err := l.Enqueuer(job.TaskType, 3).Enqueue(ctx, lane, tasks[n-1:], false); err != nil || !added[0] {
		t.Fatalf("enqueue again: %v %v", added, err)
	}
	release(2)
	check("after a job was enqueued again")
}

// TestCancelKeepsWhatTheReportNeeds cancels 5,000 waiting jobs (several script calls) and
// measures what the cancel's records cost in Redis per job, beside what the tasks held.
func TestCancelKeepsWhatTheReportNeeds(t *testing.T) {
	ctx := context.Background()
	rs := redistest.Start(t)
	l := New(rs.Client(t), "whatsapp", time.Hour)
	const n = 5000
	lane := declareAndEnqueue(t, l, "big", cancelTasks(t, "big", 0, n))
	taskBytes, err := l.rdb.MemoryUsage(ctx, TaskKey(lane, cancelTasks(t, "big", 7, 1)[0].ID), 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := strconv.ParseInt(rs.Info(t, "memory", "used_memory"), 10, 64)
	if _, err := l.CancelCampaign(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	after, _ := strconv.ParseInt(rs.Info(t, "memory", "used_memory"), 10, 64)
	if left, err := l.Backlog(ctx, lane); err != nil || left != 0 {
		t.Fatalf("backlog after the cancel: %d %v", left, err)
	}
	// asynq sees what its own DeleteAll*Tasks would have left: no task, not even its hash.
	insp := asynq.NewInspector(rs.ConnOpt(t))
	defer insp.Close()
	if qi, err := insp.GetQueueInfo(lane); err != nil || qi.Size != 0 {
		t.Errorf("asynq's view of the lane after the cancel: %+v %v", qi, err)
	}
	if _, err := insp.GetTaskInfo(lane, cancelTasks(t, "big", 7, 1)[0].ID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("a cancelled task's info: %v, want ErrTaskNotFound", err)
	}
	if k, _ := l.rdb.HLen(ctx, cancelledJobsKey(lane)).Result(); k != n {
		t.Fatalf("%d cancelled jobs recorded, want %d", k, n)
	}
	if ttl, _ := l.rdb.TTL(ctx, cancelledJobsKey(lane)).Result(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("records' TTL %v, want the retention (1h)", ttl)
	}
	recBytes, err := l.rdb.MemoryUsage(ctx, cancelledJobsKey(lane), 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	per := float64(recBytes) / n
	t.Logf("cancel of %d jobs: records %d bytes (%.0f per job; refs r/x/y of 5-6 characters each); an asynq task held %d bytes; used_memory %d -> %d",
		n, recBytes, per, taskBytes, before, after)
	if per > 140 {
		t.Errorf("%.0f bytes per cancelled job", per)
	}
	if rows := reportStates(t, l, "big"); len(rows) != n || rows["+919800000042"].State != ReportCancelled || rows["+919800000042"].Ref2 != "y42" {
		t.Errorf("report: %d rows, +919800000042 %+v", len(rows), rows["+919800000042"])
	}
}
