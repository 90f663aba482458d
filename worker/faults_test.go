package worker

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// A Kaleyra that misbehaves never leaves a job in limbo: each answer ends as the contract says,
// a retry (then a dead letter once the budget is spent) or a completed send.
func TestMisbehavingKaleyraEndsAsRetryOrDeadLetter(t *testing.T) {
	t.Run("transient faults are retried, then dead-lettered when the budget is spent", func(t *testing.T) {
		b := setup(t)
		faults := []struct{ answer, label string }{
			{"hang", "timeout"},       // stalls past WABULK_HTTP_TIMEOUT
			{"reset", "network"},      // connection dropped without an answer
			{"html502", "HTTP 502"},   // a proxy's HTML page
			{"truncated", "HTTP 500"}, // JSON cut in the middle: classified by status
			{"big", "HTTP 500"},       // 10 MB body: read up to 64 KiB, classified by status
			{"empty500", "HTTP 500"},  // no body at all
			{"503", "HTTP 503"},       // no code, Retry-After
			{"WA500", "WA500"},        // the documented internal error
		}
		ids := map[string]string{}
		for i, f := range faults {
			to := fmt.Sprintf("+91984%07d", i)
			b.Sandbox.Script(to, f.answer, f.answer) // first try + 1 retry, both fail
			ids[f.answer] = b.enqueue("mis", to, 1)
		}
		cfg := b.config()
		cfg.RetryMax = 50 * time.Millisecond // 503's Retry-After: 1 is capped by RetryMax
		b.run(cfg)
		b.waitFor("every job dead", 30*time.Second, b.done("mis", int64(len(faults))))
		for _, f := range faults {
			b.waitFor(f.answer+" archived", 5*time.Second, func() bool { return b.taskInfo(ids[f.answer]).State == asynq.TaskStateArchived })
			ti := b.taskInfo(ids[f.answer])
			if !strings.HasPrefix(ti.LastErr, f.label) || ti.Retried != 1 {
				t.Errorf("%s: last error %q after %d retries, want it to start with %q after 1 retry", f.answer, ti.LastErr, ti.Retried, f.label)
			}
		}
		c := b.counts("mis")
		if c.Retries != int64(len(faults)) || c.Dead != int64(len(faults)) || c.Completed != 0 {
			t.Errorf("counts = %+v, want %d retries and %d dead", c, len(faults), len(faults))
		}
		var n int
		b.ledger.DeadLetters(context.Background(), "mis", "", func(store.DeadLetter) bool { n++; return true })
		if n != len(faults) {
			t.Errorf("dead-letter record holds %d, want %d", n, len(faults))
		}
	})

	t.Run("a 2xx is accepted whatever its body", func(t *testing.T) {
		// The contract: 2xx is accepted. Retrying a 200 because its body is odd would send the
		// message twice; a slow-loris 200 whose body the timeout cuts was accepted too.
		b := setup(t)
		cases := []struct{ answer, to string }{{"garbage200", "+919850000001"}, {"slowloris", "+919850000002"}}
		ids := map[string]string{}
		for _, c := range cases {
			b.Sandbox.Script(c.to, c.answer)
			ids[c.answer] = b.enqueue("odd2xx", c.to, 3)
		}
		b.run(b.config())
		b.waitFor("both complete", 15*time.Second, b.done("odd2xx", 2))
		for _, c := range cases {
			b.waitFor(c.answer+" completed", 5*time.Second, func() bool { return b.taskInfo(ids[c.answer]).State == asynq.TaskStateCompleted })
		}
		if c := b.counts("odd2xx"); c.Completed != 2 || c.Retries != 0 {
			t.Errorf("counts = %+v, want 2 completed without retries", c)
		}
		if got := b.Sandbox.Stats().Received; got != 2 {
			t.Errorf("sandbox received %d calls, want 2 (no re-send of an accepted message)", got)
		}
	})
}

// The client reads at most kaleyra.MaxAnswerBytes of an answer (and drains at most 1 MiB more
// before dropping the connection), so ten 10 MB answers cost far less than 100 MB of memory.
func TestHugeAnswersAreReadInBoundedMemory(t *testing.T) {
	b := setup(t)
	const jobs, answerBytes = 10, 10 << 20
	for i := range jobs {
		to := fmt.Sprintf("+91986%07d", i)
		b.Sandbox.Script(to, "big")
		b.enqueue("huge", to, 0)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.run(b.config())
	b.waitFor("every job dead", 30*time.Second, b.done("huge", jobs))
	runtime.ReadMemStats(&after)
	perJob := (after.TotalAlloc - before.TotalAlloc) / jobs
	t.Logf("allocated %d KiB per 10 MB answer (worker, sandbox and Redis client together)", perJob>>10)
	// Reading the whole answer would allocate more than its size (ReadAll grows by doubling).
	if perJob > answerBytes/4 {
		t.Errorf("allocated %d bytes per 10 MB answer, want well under %d: the body is not capped", perJob, answerBytes/4)
	}
	if kaleyra.MaxAnswerBytes != 64<<10 {
		t.Errorf("MaxAnswerBytes = %d, want 64 KiB", kaleyra.MaxAnswerBytes)
	}
}

// A task of another type (a producer of another system on the same queue) is
// dead-lettered once, without a call to Kaleyra, and the worker goes on with the next job.
func TestUnknownTaskTypeIsDeadLetteredOnceAndTheWorkerKeepsRunning(t *testing.T) {
	b := setup(t)
	p, err := job.New("poison", job.Fields{To: "+919870000001", Type: "image", MediaID: "42"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := job.Encode(p)
	b.enqueueTasks("poison", "kaleyra:whatsapp:text", 5, store.Task{ID: "other-type", Payload: body})
	lane := b.enqueueTasks("poison", job.TaskType, 5, store.Task{ID: "binary", Payload: []byte{0xff, 0xfe, '{'}})
	b.run(b.config())
	b.waitFor("2 archived", 10*time.Second, func() bool {
		qi, err := b.Insp.GetQueueInfo(lane)
		return err == nil && qi.Archived == 2
	})
	good := b.enqueue("after", "+919870000002", 3)
	b.waitFor("the next job to be sent", 10*time.Second, b.done("after", 1))
	if b.taskInfo(good).State != asynq.TaskStateCompleted && b.counts("after").Completed != 1 {
		t.Error("the job after the poison ones was not sent")
	}
	for _, id := range []string{"other-type", "binary"} {
		ti, err := b.Insp.GetTaskInfo(lane, id)
		if err != nil {
			t.Fatal(err)
		}
		if ti.State != asynq.TaskStateArchived || ti.Retried != 0 || !strings.HasPrefix(ti.LastErr, CodeBadPayload) {
			t.Errorf("%s: state %v, retried %d, last error %q; want archived once with %s", id, ti.State, ti.Retried, ti.LastErr, CodeBadPayload)
		}
	}
	var recs []store.DeadLetter
	b.ledger.DeadLetters(context.Background(), "poison", "", func(d store.DeadLetter) bool { recs = append(recs, d); return true })
	if len(recs) != 2 {
		t.Fatalf("poison dead-letter records = %d, want 2", len(recs))
	}
	for _, d := range recs {
		if d.Code != CodeBadPayload || len(d.Raw) == 0 {
			t.Errorf("record %+v: want code %s and the raw bytes", d, CodeBadPayload)
		}
		if d.TaskID == "binary" && !bytes.Equal(d.Raw, []byte{0xff, 0xfe, '{'}) {
			t.Errorf("raw bytes = %q", d.Raw)
		}
	}
	if got := b.Sandbox.Stats().Received; got != 1 {
		t.Errorf("sandbox received %d calls, want 1 (only the good job)", got)
	}
}
