package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/job"
)

func newLedger(t *testing.T) *Ledger {
	t.Helper()
	return New(redistest.Start(t).Client(t), "whatsapp", time.Hour)
}

func dead(id, code string, at time.Time) DeadLetter {
	return DeadLetter{TaskID: id, Code: code, Message: "m", Time: at,
		Payload: job.Payload{V: job.Version, Campaign: "c", To: "+919812345678", Type: "image", MediaID: "1"}}
}

func (l *Ledger) mustCounts(t *testing.T) Counts {
	t.Helper()
	c, err := l.Counts(context.Background(), "c")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// laneCounts are the counts of one lane alone.
func (l *Ledger) laneCounts(t *testing.T, lane string) Counts {
	t.Helper()
	ctx := context.Background()
	pipe := l.rdb.Pipeline()
	r := l.queueCounts(ctx, pipe, "", []string{lane}, false)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return r.sum()
}

// take takes the next task of lane, failing when there is none.
func (l *Ledger) take(t *testing.T, lane string) *Taken {
	t.Helper()
	outcome, tk, err := l.Take(context.Background(), lane, true)
	if err != nil || outcome != TakeTaken {
		t.Fatalf("take from %s: %d %v", lane, outcome, err)
	}
	return tk
}

func TestTransitionsCountOnceWhateverTheyRepeat(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	tasks := cancelTasks(t, "c", 1, 3)
	lane := declareAndEnqueue(t, l, "c", tasks)
	// Job 1: begins twice (a crash re-ran it), then is sent twice (ack lost).
	t1 := l.take(t, lane)
	for range 2 {
		if _, sent, err := l.Begin(ctx, lane, t1.ID); err != nil || sent {
			t.Fatalf("begin: sent=%v err=%v", sent, err)
		}
	}
	if c := l.mustCounts(t); c.Active != 1 || c.Pending != 2 {
		t.Fatalf("after begin: %+v", c)
	}
	l.Sent(ctx, lane, t1.ID, []byte(`{"id":"wamid.1"}`))
	l.Sent(ctx, lane, t1.ID, []byte(`{"id":"wamid.1"}`))
	// A run after the send is told so, with the stored answer.
	prior, sent, err := l.Begin(ctx, lane, t1.ID)
	if err != nil || !sent || prior != `{"id":"wamid.1"}` {
		t.Fatalf("begin after send: %q %v %v", prior, sent, err)
	}
	if err := l.CompleteTask(ctx, t1); err != nil {
		t.Fatal(err)
	}
	// Job 2: fails, to be retried.
	t2 := l.take(t, lane)
	l.Retry(ctx, lane, t2.ID)
	if err := l.RetryTask(ctx, t2, time.Now().Add(time.Hour), "WA500: later", true); err != nil {
		t.Fatal(err)
	}
	// Job 3: dead twice with different codes keeps one record, counted once, under the newer code.
	t3 := l.take(t, lane)
	t0 := time.Now().UTC()
	l.Dead(ctx, lane, dead(t3.ID, "WA500", t0))
	l.Dead(ctx, lane, dead(t3.ID, "E110", t0.Add(time.Second)))
	if err := l.ArchiveTask(ctx, t3, "E110: low balance"); err != nil {
		t.Fatal(err)
	}
	c := l.mustCounts(t)
	want := Counts{Campaign: "c", Enqueued: 3, Completed: 1, Dead: 1, Retries: 1, Retry: 1, DeadCodes: map[string]int64{"E110": 1}}
	if c.Enqueued != want.Enqueued || c.Pending != 0 || c.Completed != 1 || c.Dead != 1 || c.Retries != 1 ||
		c.Active != 0 || c.Retry != 1 || c.Cancelled != 0 || len(c.DeadCodes) != 1 || c.DeadCodes["E110"] != 1 {
		t.Fatalf("counts = %+v, want %+v", c, want)
	}
}

// A job dead-lettered by an attempt whose archive never reached asynq (Redis went away) runs
// again; when that attempt is accepted the job counts as sent, not as sent and dead.
func TestSentAfterADeadLetterCountsAsSentOnly(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	tasks := cancelTasks(t, "c", 1, 2)
	lane := declareAndEnqueue(t, l, "c", tasks)
	t0 := time.Now().UTC()
	l.Dead(ctx, lane, dead(tasks[0].ID, "WA400", t0))
	l.Dead(ctx, lane, dead(tasks[1].ID, "WA400", t0))
	if _, _, err := l.Begin(ctx, lane, tasks[0].ID); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is an ack-lost re-run: it changes nothing
		if err := l.Sent(ctx, lane, tasks[0].ID, []byte("answer")); err != nil {
			t.Fatal(err)
		}
	}
	c := l.mustCounts(t)
	if c.Completed != 1 || c.Dead != 1 || c.DeadCodes["WA400"] != 1 || c.Pending != 0 || c.Active != 0 {
		t.Fatalf("counts = %+v, want 1 completed, 1 dead (WA400), nothing pending", c)
	}
	var left []string
	l.DeadLetters(ctx, "c", "", func(d DeadLetter) bool { left = append(left, d.TaskID); return true })
	if len(left) != 1 || left[0] != tasks[1].ID {
		t.Fatalf("dead letters left: %v, want [%s]", left, tasks[1].ID)
	}
}

func TestUndeadRemovesOnlyTheRecordItRead(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	tasks := cancelTasks(t, "c", 1, 1)
	lane := declareAndEnqueue(t, l, "c", tasks)
	id := tasks[0].ID
	t0 := time.Now().UTC()
	old := dead(id, "E110", t0)
	l.Dead(ctx, lane, old)
	// Redriven, then dead-lettered again before the redrive removed the record it read.
	l.Dead(ctx, lane, dead(id, "WA400", t0.Add(time.Second)))
	old.Scope = lane
	if ok, err := l.Undead(ctx, old); err != nil || ok {
		t.Fatalf("undead of a replaced record: ok=%v err=%v, want false", ok, err)
	}
	var got []DeadLetter
	l.DeadLetters(ctx, "c", "", func(d DeadLetter) bool { got = append(got, d); return true })
	if len(got) != 1 || got[0].Code != "WA400" || got[0].Scope != lane {
		t.Fatalf("records = %+v, want the newer WA400 one in %s", got, lane)
	}
	if ok, err := l.Undead(ctx, got[0]); err != nil || !ok {
		t.Fatalf("undead of the current record: ok=%v err=%v", ok, err)
	}
	if c := l.mustCounts(t); c.Dead != 0 || c.Redriven != 1 || len(c.DeadCodes) != 0 || c.Pending != 1 {
		t.Fatalf("counts after redrive = %+v", c)
	}
}

func TestDeadLettersFiltersByCodeAndReadsPoisonRecords(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := declareAndEnqueue(t, l, "c", cancelTasks(t, "c", 1, 1))
	for i, code := range []string{"E110", "E110", "WA400"} {
		l.Dead(ctx, lane, dead("c:"+string(rune('a'+i)), code, time.Now().UTC()))
	}
	n := 0
	l.DeadLetters(ctx, "c", "E110", func(DeadLetter) bool { n++; return true })
	if n != 2 {
		t.Fatalf("E110 records = %d, want 2", n)
	}
	// A payload that did not decode keeps its bytes.
	l.Dead(ctx, lane, DeadLetter{TaskID: "x", Code: "INVALID_PAYLOAD", Raw: []byte("not json")})
	var raw []byte
	l.DeadLetters(ctx, "c", "INVALID_PAYLOAD", func(d DeadLetter) bool { raw = d.Raw; return true })
	if string(raw) != "not json" {
		t.Fatalf("poison record's bytes = %q", raw)
	}
}

func TestSentSurvivesAFlushedScriptCacheAndWritesTheResult(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	l := New(rdb, "whatsapp", time.Hour)
	lane := l.LaneName("c", "+919000000001")
	lid := func(n string) string { return "c:919000000001:" + n }
	sent := func() {
		t.Helper()
		if err := l.Sent(ctx, lane, lid("1"), []byte("answer")); err != nil {
			t.Fatalf("Sent: %v", err)
		}
	}
	sent()
	// A restarted Redis has no scripts cached: EVALSHA in the pipeline fails with NOSCRIPT.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Sent(ctx, lane, lid("2"), []byte("answer")); err != nil {
		t.Fatalf("Sent after SCRIPT FLUSH: %v", err)
	}
	for _, k := range []string{TaskKey(lane, lid("1")), TaskKey(lane, lid("2"))} {
		if v, _ := rdb.HGet(ctx, k, "result").Result(); v != "answer" {
			t.Errorf("task result %s = %q, want the answer", k, v)
		}
	}
	if c := l.laneCounts(t, lane); c.Completed != 2 {
		t.Errorf("lane completed = %d, want 2", c.Completed)
	}
	sent() // repeats count nothing
	if c := l.laneCounts(t, lane); c.Completed != 2 {
		t.Errorf("lane completed after a repeat = %d, want 2", c.Completed)
	}
}

func TestBatchSharesRoundTripsAndKeepsEachOutcome(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	l := New(rdb, "whatsapp", time.Hour)
	const perCampaign = 150
	campaigns := []string{"a", "b"}
	scope := map[string]string{"a": l.LaneName("a", "+919000000001"), "b": l.LaneName("b", "+919000000001")}
	id := func(c string, i int) string { return fmt.Sprintf("%s:919000000001:%d", c, i) }
	for _, c := range campaigns {
		for i := range 10 { // sent before: a crash lost their acks
			if err := l.Sent(ctx, scope[c], id(c, i), []byte("prior "+id(c, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	evalshas := func() int {
		var n int
		fmt.Sscanf(srv.Info(t, "commandstats", "cmdstat_evalsha"), "calls=%d", &n)
		return n
	}
	before := evalshas()
	stop := l.Batch(64)
	var wg sync.WaitGroup
	for _, c := range campaigns {
		for i := range perCampaign {
			wg.Go(func() {
				tid := id(c, i)
				if i == perCampaign/2 && c == "a" {
					// A Redis that lost its scripts mid-run: the batch in flight writes again with EVAL.
					rdb.ScriptFlush(ctx)
				}
				prior, sent, err := l.Begin(ctx, scope[c], tid)
				if err != nil {
					t.Errorf("%s: begin: %v", tid, err)
					return
				}
				if sent != (i < 10) || (sent && prior != "prior "+tid) {
					t.Errorf("%s: begin says sent=%v prior=%q", tid, sent, prior)
				}
				if sent {
					return
				}
				if err := l.Sent(ctx, scope[c], tid, []byte("answer "+tid)); err != nil {
					t.Errorf("%s: sent: %v", tid, err)
				}
			})
		}
	}
	wg.Wait()
	ops := 2*2*perCampaign - 2*10
	calls := evalshas() - before
	t.Logf("%d ops in %d EVALSHA calls", ops, calls)
	if calls*2 > ops {
		t.Errorf("%d ops took %d EVALSHA calls: want them to share round trips", ops, calls)
	}
	stop()
	// After stop a call is written alone.
	if err := l.Sent(ctx, scope["a"], "a:late", []byte("late")); err != nil {
		t.Fatal(err)
	}
	for _, c := range campaigns {
		got := l.laneCounts(t, scope[c])
		want := int64(perCampaign)
		if c == "a" {
			want++
		}
		if got.Completed != want || got.Active != 0 {
			t.Errorf("%s: %+v, want completed %d, active 0", c, got, want)
		}
		for i := 10; i < perCampaign; i++ {
			tid := id(c, i)
			if v, _ := rdb.HGet(ctx, TaskKey(scope[c], tid), "result").Result(); v != "answer "+tid {
				t.Fatalf("%s: task result %q", tid, v)
			}
		}
	}
}
