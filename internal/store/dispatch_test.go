package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// dispatchLane is a lane with n tasks enqueued through the store's own enqueue path.
func dispatchLane(t *testing.T, l *Ledger, n int) (string, *asynq.Inspector) {
	t.Helper()
	ctx := context.Background()
	ln := Lane{Campaign: "c", Sender: "+919000000001"}
	if err := l.DeclareLane(ctx, ln, true); err != nil {
		t.Fatal(err)
	}
	name := l.LaneName("c", "+919000000001")
	var tasks []Task
	for i := range n {
		tasks = append(tasks, Task{ID: "c:919000000001:" + string(rune('a'+i)), Payload: []byte(`{"v":1}`)})
	}
	if _, _, err := l.Enqueuer("kaleyra:whatsapp:media", 2).Enqueue(ctx, name, tasks, true); err != nil {
		t.Fatal(err)
	}
	if err := l.RegisterLane(ctx, ln, true); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(l.rdb)
	return name, insp
}

func mustTake(t *testing.T, l *Ledger, lane string) *Taken {
	t.Helper()
	outcome, tk, err := l.Take(context.Background(), lane, true)
	if err != nil || outcome != TakeTaken {
		t.Fatalf("take: outcome %d, %v; want a task", outcome, err)
	}
	return tk
}

func taskState(t *testing.T, insp *asynq.Inspector, lane, id string) *asynq.TaskInfo {
	t.Helper()
	ti, err := insp.GetTaskInfo(lane, id)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	return ti
}

// Every move of a taken task leaves it as asynq's own processor would: asynq's Inspector reads
// the states, the retry count, the last error and the result, and the ledger's counts add up.
func TestTakenTasksMoveThroughAsynqsStates(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane, insp := dispatchLane(t, l, 5)

	a := mustTake(t, l, lane)
	if a.ID != "c:919000000001:a" || a.Type != "kaleyra:whatsapp:media" || string(a.Payload) != `{"v":1}` || a.Retry != 2 || a.Retried != 0 || a.Prior != "" {
		t.Fatalf("taken %+v: want the oldest task, as enqueued", a)
	}
	if ti := taskState(t, insp, lane, a.ID); ti.State != asynq.TaskStateActive {
		t.Fatalf("taken task is %v, want active", ti.State)
	}
	if err := l.Sent(ctx, lane, a.ID, []byte(`{"id":"m1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := l.CompleteTask(ctx, a); err != nil {
		t.Fatal(err)
	}
	if ti := taskState(t, insp, lane, a.ID); ti.State != asynq.TaskStateCompleted || string(ti.Result) != `{"id":"m1"}` || ti.CompletedAt.IsZero() {
		t.Errorf("completed task: %v, result %q, completed at %v", ti.State, ti.Result, ti.CompletedAt)
	}

	b := mustTake(t, l, lane)
	if err := l.RetryTask(ctx, b, time.Now().Add(time.Hour), "WA500: try later", true); err != nil {
		t.Fatal(err)
	}
	if ti := taskState(t, insp, lane, b.ID); ti.State != asynq.TaskStateRetry || ti.Retried != 1 || ti.LastErr != "WA500: try later" {
		t.Errorf("retried task: %v, retried %d, last error %q", ti.State, ti.Retried, ti.LastErr)
	}
	// Not a failure: no retry used.
	c := mustTake(t, l, lane)
	if err := l.RetryTask(ctx, c, time.Now().Add(time.Hour), "stopping", false); err != nil {
		t.Fatal(err)
	}
	if ti := taskState(t, insp, lane, c.ID); ti.State != asynq.TaskStateRetry || ti.Retried != 0 {
		t.Errorf("requeued-later task: %v, retried %d; want retry with none used", ti.State, ti.Retried)
	}

	d := mustTake(t, l, lane)
	if err := l.ArchiveTask(ctx, d, "E110: low balance"); err != nil {
		t.Fatal(err)
	}
	if ti := taskState(t, insp, lane, d.ID); ti.State != asynq.TaskStateArchived || ti.LastErr != "E110: low balance" {
		t.Errorf("archived task: %v, last error %q", ti.State, ti.LastErr)
	}
	// The sweep tells the reconciler of the new archive, until it has read it.
	if sw, err := l.Sweep(ctx, []string{lane}, false); err != nil || len(sw) != 1 || !sw[0].Archived {
		t.Errorf("sweep after an archive: %+v, %v; want it flagged", sw, err)
	}
	arch, err := l.ArchivedSince(ctx, lane, 10)
	if err != nil || len(arch) != 1 {
		t.Fatalf("archived since: %v, %v", arch, err)
	}
	l.rdb.Set(ctx, l.ReconcileMark(lane), arch[0].At, 0) // read up to and including it
	if sw, err := l.Sweep(ctx, []string{lane}, false); err != nil || len(sw) != 1 || sw[0].Archived {
		t.Errorf("sweep after the reconciler read the archive: %+v, %v; want nothing flagged", sw, err)
	}

	e := mustTake(t, l, lane)
	if err := l.RequeueTask(ctx, e); err != nil {
		t.Fatal(err)
	}
	if again := mustTake(t, l, lane); again.ID != e.ID {
		t.Errorf("after a requeue the next take is %s, want the requeued %s first", again.ID, e.ID)
	}
	if err := l.DropSuppressed(ctx, e, "c", "+919812345601"); err != nil {
		t.Fatal(err)
	}
	if _, err := insp.GetTaskInfo(lane, e.ID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("a suppressed task is still in asynq: %v", err)
	}
	if outcome, _, err := l.Take(ctx, lane, true); err != nil || outcome != TakeEmpty {
		t.Errorf("take of a drained lane: %d, %v; want empty", outcome, err)
	}
	cnt := l.mustCounts(t)
	if cnt.Enqueued != 5 || cnt.Completed != 1 || cnt.Suppressed != 1 || cnt.Retry != 2 || cnt.Active != 0 || cnt.Pending != 0 {
		t.Errorf("counts %+v", cnt)
	}
	q, err := insp.GetQueueInfo(lane)
	if err != nil || q.Processed != 3 || q.Failed != 2 {
		t.Errorf("asynq's statistics: %+v, %v; want 3 processed (complete, retry, archive), 2 failed", q, err)
	}
}

// A task a worker sent before (its result is the sent marker) comes back from a take with it, so
// the worker completes it without a second call; a paused or cancelled lane gives nothing.
func TestTakeReadsTheSentMarkerAndRefusesHeldLanes(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane, _ := dispatchLane(t, l, 2)
	if err := l.Sent(ctx, lane, "c:919000000001:a", []byte(`{"id":"first"}`)); err != nil {
		t.Fatal(err)
	}
	if tk := mustTake(t, l, lane); tk.Prior != `{"id":"first"}` {
		t.Errorf("prior %q, want the first answer", tk.Prior)
	}
	if err := l.rdb.Set(ctx, asynqPausedKey(lane), "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if outcome, _, _ := l.Take(ctx, lane, true); outcome != TakeHeld {
		t.Errorf("take of a paused lane: %d, want held", outcome)
	}
	l.rdb.Del(ctx, asynqPausedKey(lane))
	if _, err := l.CancelCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if outcome, _, _ := l.Take(ctx, lane, true); outcome != TakeCancelled && outcome != TakeEmpty {
		t.Errorf("take of a cancelled lane: %d, want cancelled (or empty: the cancel removed its tasks)", outcome)
	}
}

// A retry is forwarded when it falls due, through the due index, and a retry written while
// the forwarder rewrites the lane's entry is not lost.
func TestDueRetriesAreForwardedOnceDue(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane, insp := dispatchLane(t, l, 2)
	a, b := mustTake(t, l, lane), mustTake(t, l, lane)
	if err := l.RetryTask(ctx, a, time.Now().Add(-time.Second), "x", true); err != nil {
		t.Fatal(err)
	}
	if err := l.RetryTask(ctx, b, time.Now().Add(time.Hour), "x", true); err != nil {
		t.Fatal(err)
	}
	woken, err := l.ForwardDue(ctx)
	if err != nil || len(woken) != 1 || woken[0] != lane {
		t.Fatalf("forward: %v, %v; want the lane", woken, err)
	}
	if ti := taskState(t, insp, lane, a.ID); ti.State != asynq.TaskStatePending {
		t.Errorf("due retry is %v, want pending", ti.State)
	}
	if ti := taskState(t, insp, lane, b.ID); ti.State != asynq.TaskStateRetry {
		t.Errorf("retry due in an hour is %v, want retry", ti.State)
	}
	// The lane stays in the index at its next due time; nothing more is due now.
	score, err := l.rdb.ZScore(ctx, l.dueKey(), lane).Result()
	if err != nil || int64(score) < time.Now().Add(59*time.Minute).Unix() {
		t.Errorf("due entry %v, %v; want the hour-later retry's time", score, err)
	}
	if woken, err := l.ForwardDue(ctx); err != nil || len(woken) != 0 {
		t.Errorf("second forward: %v, %v; want nothing", woken, err)
	}
	// The index lost its entry (as if a rewrite raced a retry): the sweep puts it back.
	l.rdb.ZRem(ctx, l.dueKey(), lane)
	// A Redis that never saw the sweep's script (a restart): it is loaded, not answered NOSCRIPT.
	if err := l.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	swept, err := l.Sweep(ctx, []string{lane}, true)
	if err != nil || len(swept) != 1 || swept[0].Pending != 1 || swept[0].Due < 0 || !swept[0].Backlog() || swept[0].Archived {
		t.Fatalf("sweep: %+v, %v; want the lane with a pending task and a retry, nothing archived", swept, err)
	}
	if _, err := l.rdb.ZScore(ctx, l.dueKey(), lane).Result(); errors.Is(err, redis.Nil) {
		t.Error("the sweep did not restore the due entry of a lane with a retry")
	}
}

// A task whose worker stopped renewing its lease is found once the lease and the grace are
// over; a lane with no lease left leaves the index.
func TestExpiredLeasesAreFoundAndTheIndexEmpties(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane, _ := dispatchLane(t, l, 2)
	a, b := mustTake(t, l, lane), mustTake(t, l, lane)
	if got, err := l.Expired(ctx, 0); err != nil || len(got) != 0 {
		t.Fatalf("expired right after the take: %v, %v", got, err)
	}
	// a's worker died: its lease ended a minute ago. b's is renewed.
	l.rdb.ZAddXX(ctx, asynqPrefix(lane)+"lease", redis.Z{Member: a.ID, Score: float64(time.Now().Add(-time.Minute).Unix())})
	if err := l.ExtendLeases(ctx, map[string][]string{lane: {b.ID}}); err != nil {
		t.Fatal(err)
	}
	got, err := l.Expired(ctx, 30*time.Second)
	if err != nil || len(got) != 1 || got[0].ID != a.ID || got[0].Lane != lane {
		t.Fatalf("expired: %+v, %v; want a", got, err)
	}
	if err := l.RetryTask(ctx, got[0], time.Now(), ErrLeaseExpired.Error(), true); err != nil {
		t.Fatal(err)
	}
	if err := l.CompleteTask(ctx, b); err != nil {
		t.Fatal(err)
	}
	// No lease left, but a take indexed the lane within a lease: takes may skip the index for
	// IndexEvery, so the entry stays until its score has passed.
	if _, err := l.Expired(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.rdb.ZCard(ctx, l.leasedKey()).Result(); n != 1 {
		t.Errorf("lease index holds %d lanes right after the last lease, want the lane still", n)
	}
	l.rdb.ZAdd(ctx, l.leasedKey(), redis.Z{Member: lane, Score: float64(time.Now().Add(-time.Second).Unix())})
	if _, err := l.Expired(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.rdb.ZCard(ctx, l.leasedKey()).Result(); n != 0 {
		t.Errorf("lease index holds %d lanes, want none once no lease is left and its time has passed", n)
	}
}

// rewrite keeps every field it is not asked to change, so asynq decodes what it wrote.
func TestRewriteKeepsTheMessageAsynqReads(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane, insp := dispatchLane(t, l, 1)
	a := mustTake(t, l, lane)
	long := strings.Repeat("é", 300)
	if err := l.RetryTask(ctx, a, time.Now().Add(time.Hour), long, true); err != nil {
		t.Fatal(err)
	}
	ti := taskState(t, insp, lane, a.ID)
	if ti.Type != "kaleyra:whatsapp:media" || string(ti.Payload) != `{"v":1}` || ti.MaxRetry != 2 || ti.Retried != 1 || ti.LastErr != long || ti.Queue != lane || ti.Retention != time.Hour {
		t.Errorf("after a rewrite asynq reads %+v", ti)
	}
}
