package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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

func TestTransitionsCountOnceWhateverTheyRepeat(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	if err := l.AddEnqueued(ctx, "c", 3); err != nil {
		t.Fatal(err)
	}
	// Job 1: begins twice (a crash re-ran it), retries, then is sent twice (ack lost).
	for range 2 {
		if _, sent, err := l.Begin(ctx, l.LegacyScope("c"), "c:1"); err != nil || sent {
			t.Fatalf("begin: sent=%v err=%v", sent, err)
		}
	}
	if c := l.mustCounts(t); c.Active != 1 || c.Pending != 2 {
		t.Fatalf("after begin: %+v", c)
	}
	l.Retry(ctx, l.LegacyScope("c"), "c:1")
	l.Begin(ctx, l.LegacyScope("c"), "c:1")
	l.Sent(ctx, l.LegacyScope("c"), "c:1", []byte(`{"id":"wamid.1"}`))
	l.Sent(ctx, l.LegacyScope("c"), "c:1", []byte(`{"id":"wamid.1"}`))
	// A run after the send is told so, with the stored answer.
	prior, sent, err := l.Begin(ctx, l.LegacyScope("c"), "c:1")
	if err != nil || !sent || prior != `{"id":"wamid.1"}` {
		t.Fatalf("begin after send: %q %v %v", prior, sent, err)
	}
	// Job 2: dead twice with different codes keeps one record, counted once, under the newer code.
	t0 := time.Now().UTC()
	l.Dead(ctx, l.LegacyScope("c"), dead("c:2", "WA500", t0))
	l.Dead(ctx, l.LegacyScope("c"), dead("c:2", "E110", t0.Add(time.Second)))
	c := l.mustCounts(t)
	want := Counts{Campaign: "c", Enqueued: 3, Pending: 1, Completed: 1, Dead: 1, Retries: 1, DeadCodes: map[string]int64{"E110": 1}}
	if c.Enqueued != want.Enqueued || c.Pending != want.Pending || c.Completed != 1 || c.Dead != 1 || c.Retries != 1 ||
		c.Active != 0 || c.Retry != 0 || len(c.DeadCodes) != 1 || c.DeadCodes["E110"] != 1 {
		t.Fatalf("counts = %+v, want %+v", c, want)
	}
}

// A job dead-lettered by an attempt whose archive never reached asynq (Redis went away) runs
// again; when that attempt is accepted the job counts as sent, not as sent and dead.
func TestSentAfterADeadLetterCountsAsSentOnly(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	l.AddEnqueued(ctx, "c", 2)
	t0 := time.Now().UTC()
	l.Dead(ctx, l.LegacyScope("c"), dead("c:1", "WA400", t0))
	l.Dead(ctx, l.LegacyScope("c"), dead("c:2", "WA400", t0))
	if _, _, err := l.Begin(ctx, l.LegacyScope("c"), "c:1"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is an ack-lost re-run: it changes nothing
		if err := l.Sent(ctx, l.LegacyScope("c"), "c:1", []byte("answer")); err != nil {
			t.Fatal(err)
		}
	}
	c := l.mustCounts(t)
	if c.Completed != 1 || c.Dead != 1 || c.DeadCodes["WA400"] != 1 || c.Pending != 0 || c.Active != 0 {
		t.Fatalf("counts = %+v, want 1 completed, 1 dead (WA400), nothing pending", c)
	}
	var left []string
	l.DeadLetters(ctx, "c", "", func(d DeadLetter) bool { left = append(left, d.TaskID); return true })
	if len(left) != 1 || left[0] != "c:2" {
		t.Fatalf("dead letters left: %v, want [c:2]", left)
	}
}

func TestUndeadRemovesOnlyTheRecordItRead(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	l.AddEnqueued(ctx, "c", 1)
	t0 := time.Now().UTC()
	old := dead("c:1", "E110", t0)
	l.Dead(ctx, l.LegacyScope("c"), old)
	// Redriven, then dead-lettered again before the redrive removed the record it read.
	l.Dead(ctx, l.LegacyScope("c"), dead("c:1", "WA400", t0.Add(time.Second)))
	old.Scope = l.LegacyScope("c")
	if ok, err := l.Undead(ctx, old); err != nil || ok {
		t.Fatalf("undead of a replaced record: ok=%v err=%v, want false", ok, err)
	}
	var got []DeadLetter
	l.DeadLetters(ctx, "c", "", func(d DeadLetter) bool { got = append(got, d); return true })
	if len(got) != 1 || got[0].Code != "WA400" {
		t.Fatalf("records = %+v, want the newer WA400 one", got)
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
	for i, code := range []string{"E110", "E110", "WA400"} {
		l.Dead(ctx, l.LegacyScope("c"), dead("c:"+string(rune('a'+i)), code, time.Now().UTC()))
	}
	n := 0
	l.DeadLetters(ctx, "c", "E110", func(DeadLetter) bool { n++; return true })
	if n != 2 {
		t.Fatalf("E110 records = %d, want 2", n)
	}
	l.Dead(ctx, l.LegacyScope(PoisonCampaign), DeadLetter{TaskID: "x", Code: "INVALID_PAYLOAD", Raw: []byte("not json")})
	names, _ := l.Campaigns(ctx)
	found := false
	for _, c := range names {
		found = found || c == PoisonCampaign
	}
	if !found {
		t.Fatalf("campaigns %v lack %s", names, PoisonCampaign)
	}
}

func TestSentSurvivesAFlushedScriptCacheAndWritesTheResult(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	l := New(rdb, "whatsapp", time.Hour)
	l.AddEnqueued(ctx, "c", 2)
	lane := l.LaneName("c", "+919000000001")
	lid := func(n string) string { return "c:919000000001:" + n }
	sent := func() {
		t.Helper()
		for _, s := range [][2]string{{l.LegacyScope("c"), "c:1"}, {lane, lid("1")}} {
			if err := l.Sent(ctx, s[0], s[1], []byte("answer")); err != nil {
				t.Fatalf("Sent %s: %v", s[1], err)
			}
		}
	}
	sent()
	// A restarted Redis has no scripts cached: EVALSHA in the pipeline fails with NOSCRIPT.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][2]string{{l.LegacyScope("c"), "c:2"}, {lane, lid("2")}} {
		if err := l.Sent(ctx, s[0], s[1], []byte("answer")); err != nil {
			t.Fatalf("Sent %s after SCRIPT FLUSH: %v", s[1], err)
		}
	}
	for _, k := range []string{TaskKey("whatsapp", "c:1"), TaskKey("whatsapp", "c:2"), TaskKey(lane, lid("1")), TaskKey(lane, lid("2"))} {
		if v, _ := rdb.HGet(ctx, k, "result").Result(); v != "answer" {
			t.Errorf("task result %s = %q, want the answer", k, v)
		}
	}
	if c := l.mustCounts(t); c.Completed != 2 {
		t.Errorf("single-queue completed = %d, want 2", c.Completed)
	}
	if c, _ := l.counts(ctx, []string{lane}); c.Completed != 2 {
		t.Errorf("lane completed = %d, want 2", c.Completed)
	}
	sent() // repeats count nothing
	if c, _ := l.counts(ctx, []string{lane}); c.Completed != 2 {
		t.Errorf("lane completed after a repeat = %d, want 2", c.Completed)
	}
}

func TestBatchSharesRoundTripsAndKeepsEachOutcome(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	l := New(rdb, "whatsapp", time.Hour)
	const perCampaign = 150
	// Campaign a is in the single queue, b in its lane: the two kinds of sent marker.
	campaigns := []string{"a", "b"}
	scope := map[string]string{"a": l.LegacyScope("a"), "b": l.LaneName("b", "+919000000001")}
	id := func(c string, i int) string { return fmt.Sprintf("%s:919000000001:%d", c, i) }
	for _, c := range campaigns {
		l.AddEnqueued(ctx, c, perCampaign)
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
		got, err := l.counts(ctx, []string{scope[c]})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(perCampaign)
		if c == "a" {
			want++
		}
		if got.Completed != want || got.Active != 0 {
			t.Errorf("%s: %+v, want completed %d, active 0", c, got, want)
		}
		for i := 10; i < perCampaign; i++ {
			tid := id(c, i)
			if v, _ := rdb.HGet(ctx, TaskKey(l.QueueOf(scope[c]), tid), "result").Result(); v != "answer "+tid {
				t.Fatalf("%s: task result %q", tid, v)
			}
			if c == "a" {
				if v, _ := rdb.HGet(ctx, key(scope[c], "sent"), tid).Result(); v != "answer "+tid {
					t.Fatalf("%s: sent marker %q", tid, v)
				}
			}
		}
	}
}
