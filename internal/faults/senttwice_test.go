package faults

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/sandbox"
)

// The sent-twice window, both sides of it.
//
// Closed: Kaleyra answered, the worker wrote the sent marker, and the process died before
// asynq's ack, so the job runs again. The marker stops the second send: the job completes with
// the first answer as its result and the sandbox sees no call.
//
// Open: the process dies after Kaleyra accepted the message but before its answer arrived (or
// before the marker was written). Nothing on wabulk's side knows the message went out, so the
// retry sends it again: exactly one duplicate per such job.
func TestSentTwiceWindow(t *testing.T) {
	t.Run("marker written, ack lost: detected, not re-sent", func(t *testing.T) {
		w := newWorld(t, sandbox.Config{}, redistestOptions())
		ids := w.enqueue("window", 5, 1, 8)
		answer := []byte(`{"messages":[{"id":"wamid.first-send"}]}`)
		// What the crashed worker did before dying: Begin, the send, the marker, in the
		// ledger scope of the job's lane.
		ctx := context.Background()
		lane := w.taskQueue(ids[0])
		if _, _, err := w.ledger.Begin(ctx, lane, ids[0]); err != nil {
			t.Fatal(err)
		}
		if err := w.ledger.Sent(ctx, lane, ids[0], answer); err != nil {
			t.Fatal(err)
		}
		p := startWorker(t, w.env())
		w.waitFor("the job to complete", 15*time.Second, w.finished("window", 1))
		ti, err := w.Insp.GetTaskInfo(lane, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if ti.State != asynq.TaskStateCompleted || string(ti.Result) != string(answer) {
			t.Errorf("task %v with result %q; want completed with the first answer", ti.State, ti.Result)
		}
		if got := w.Sandbox.Stats().Received; got != 0 {
			t.Errorf("sandbox received %d calls, want 0", got)
		}
		if c := w.counts("window"); c.Completed != 1 {
			t.Errorf("completed %d, want 1 (counted once)", c.Completed)
		}
		if logsSay(p, `"code":"already_sent"`, `"outcome":"sent"`) != 1 {
			t.Errorf("no already_sent line in the worker's log:\n%s", p.Stderr())
		}
	})

	t.Run("killed while Kaleyra's answer is on its way: sent twice", func(t *testing.T) {
		w := newWorld(t, sandbox.Config{Latency: time.Second}, redistestOptions())
		ids := w.enqueue("window", 6, 1, 8)
		a := startWorker(t, w.env())
		// The sandbox accepts (and counts) a message when the call arrives, then answers a
		// second later: kill the worker inside that second.
		w.waitFor("the call to be accepted", 15*time.Second, func() bool { return w.Sandbox.Stats().Accepted == 1 })
		killedAt := time.Now()
		a.Signal(t, syscall.SIGKILL)
		a.Wait(t, 5*time.Second)
		if sent, _ := w.ledger.WasSent(context.Background(), "window", ids[0]); sent {
			t.Fatal("sent marker written before the answer arrived")
		}
		if orphans := ageOrphanedLeases(t, w, "window", killedAt, false); len(orphans) != 1 {
			t.Fatalf("orphans = %v, want the one job", orphans)
		}
		startWorker(t, w.env())
		w.waitFor("the job to complete", 15*time.Second, w.finished("window", 1))
		if got := w.Sandbox.Stats().AcceptedTo[phone(6, 0)]; got != 2 {
			t.Errorf("accepted %d times, want 2: this window is open and docs/guarantees.md says so", got)
		}
		if c := w.counts("window"); c.Completed != 1 {
			t.Errorf("completed %d, want 1", c.Completed)
		}
	})
}
