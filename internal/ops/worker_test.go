package ops

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

// live is a bundle with a real worker serving the queue and sending to a sandbox.
type live struct {
	*bundle
	sb *sandbox.Server
}

// startLive runs a worker on the bundle's queue against a fresh sandbox until the test ends.
func startLive(t *testing.T, sbc sandbox.Config, pauseOn ...string) *live {
	t.Helper()
	b := setup(t)
	sb := testkit.Sandbox(t, sbc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, worker.Config{
			Redis: b.conn, Queue: testQueue, Concurrency: 4, Rate: 1000, RetryBase: 20 * time.Millisecond,
			RetryMax: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, PauseOn: pauseOn,
			From:    testkit.Sender,
			Kaleyra: worker.KaleyraConfig{SID: testkit.SID, APIKey: testkit.APIKey, BaseURL: sb.URL, Timeout: 5 * time.Second},
		}, zap.NewNop())
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return &live{bundle: b, sb: sb}
}

// produce enqueues a campaign through the producer, as `wabulk enqueue` does.
func (l *live) produce(t *testing.T, campaign string, to ...string) {
	t.Helper()
	p, err := producer.New(l.conn, producer.Config{Queue: testQueue, MaxRetry: 3, DefaultFrom: testkit.Sender})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	csv := "to,type,media_link,ref\n"
	for i, n := range to {
		csv += n + ",image,https://example.com/a.jpg,ref-" + string(rune('a'+i)) + "\n"
	}
	s, err := p.Campaign(context.Background(), campaign, producer.ReadCSV(strings.NewReader(csv)), producer.Options{}, nil)
	if err != nil || s.Enqueued != len(to) {
		t.Fatalf("enqueue: %+v, %v", s, err)
	}
}

// waitCounts polls the campaign's counts until cond holds, failing after 20s.
func (l *live) waitCounts(t *testing.T, campaign, what string, cond func(store.Counts) bool) store.Counts {
	t.Helper()
	var c store.Counts
	var err error
	testkit.Eventually(t, 20*time.Second, what, func() bool {
		c, err = l.ops.Campaign(context.Background(), campaign)
		return err == nil && cond(c)
	}, func() string {
		q, _ := l.ops.QueueCounts("")
		return fmt.Sprintf("counts %+v, err %v; queue %+v; sandbox %+v", c, err, q, l.sb.Stats())
	})
	return c
}

// waitQueue polls the queue's counts until cond holds, failing after 20s.
func (l *live) waitQueue(t *testing.T, what string, cond func(QueueCounts) bool) QueueCounts {
	t.Helper()
	var q QueueCounts
	var err error
	testkit.Eventually(t, 20*time.Second, what, func() bool {
		q, err = l.ops.QueueCounts("")
		return err == nil && cond(q)
	}, func() string { return fmt.Sprintf("queue %+v, %v", q, err) })
	return q
}

func TestRedriveOfLowBalanceAfterTopUpEndsInSent(t *testing.T) {
	l := startLive(t, sandbox.Config{Balance: 3})
	ctx := context.Background()
	if err := l.sb.Script(numbers[0], sandbox.AnswerInternal, sandbox.AnswerOK); err != nil {
		t.Fatal(err)
	}
	l.produce(t, "topup", numbers...)

	c := l.waitCounts(t, "topup", "every job sent or dead", func(c store.Counts) bool { return c.Completed+c.Dead == 5 })
	want := store.Counts{Campaign: "topup", Enqueued: 5, Completed: 3, Dead: 2, Retries: 1, DeadCodes: map[string]int64{"E110": 2}}
	if d := diff(want, c); d != "" {
		t.Fatalf("after the balance ran out:\n%s", d)
	}
	dead, err := l.ops.DeadLetters(ctx, DeadFilter{Campaign: "topup", Code: "E110"})
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead list: %d entries, %v", len(dead), err)
	}
	// The ledger records an outcome before asynq moves the task out of active.
	l.waitQueue(t, "asynq to archive both", func(q QueueCounts) bool { return q.Archived == 2 && q.Active == 0 })

	l.sb.SetBalance(-1) // the top-up
	rep, err := l.ops.Redrive(ctx, DeadFilter{Campaign: "topup", Code: "E110"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(RedriveReport{Matched: 2, Redriven: 2, ByCode: map[string]int{"E110": 2}}, rep); d != "" {
		t.Errorf("redrive:\n%s", d)
	}
	c = l.waitCounts(t, "topup", "the redriven jobs to be sent", func(c store.Counts) bool { return c.Completed == 5 })
	want = store.Counts{Campaign: "topup", Enqueued: 5, Completed: 5, Retries: 1, Redriven: 2}
	if d := diff(want, c); d != "" {
		t.Errorf("after redrive:\n%s", d)
	}
	st := l.sb.Stats()
	if st.Accepted != 5 || len(st.Duplicates()) > 0 {
		t.Errorf("sandbox accepted %d (duplicates %v), want each of 5 once", st.Accepted, st.Duplicates())
	}
	l.waitQueue(t, "asynq to complete all 5", func(q QueueCounts) bool { return q.Archived == 0 && q.Completed == 5 && q.Active == 0 })
	again, err := l.ops.Redrive(ctx, DeadFilter{Campaign: "topup"}, false)
	if err != nil || again.Matched != 0 {
		t.Errorf("second redrive: %+v, %v; want nothing to do", again, err)
	}
}

func TestPauseOnLowBalanceThenResumeSendsTheRest(t *testing.T) {
	l := startLive(t, sandbox.Config{Balance: 0}, "E110")
	l.produce(t, "paused", numbers[:3]...)

	// Paused, and no job in flight: one that got its E110 after a resume would pause again.
	l.waitQueue(t, "the worker to pause the queue on E110", func(q QueueCounts) bool { return q.Paused && q.Active == 0 })
	if c, _ := l.ops.Campaign(context.Background(), "paused"); c.Dead != 0 || c.Completed != 0 {
		t.Errorf("paused on E110 yet %+v: nothing should be dead or sent", c)
	}
	l.sb.SetBalance(-1)
	if err := l.ops.Resume(""); err != nil {
		t.Fatal(err)
	}
	c := l.waitCounts(t, "paused", "all three sent after resume", func(c store.Counts) bool { return c.Completed == 3 })
	if c.Dead != 0 {
		t.Errorf("after resume %+v, want no dead letters", c)
	}
}
