package store

import (
	"context"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// send records tasks of lane as sent, as a worker does: Kaleyra's answer through the ledger,
// then asynq takes the task off its lists.
func send(t *testing.T, l *Ledger, lane string, tasks []Task) {
	t.Helper()
	ctx := context.Background()
	for _, tk := range tasks {
		if err := l.Sent(ctx, lane, tk.ID, []byte(`{"id":"1"}`)); err != nil {
			t.Fatal(err)
		}
		pipe := l.rdb.Pipeline()
		pipe.LRem(ctx, PendingKey(lane), 0, tk.ID)
		pipe.LRem(ctx, asynqPrefix(lane)+"active", 0, tk.ID)
		pipe.ZAdd(ctx, CompletedKey(lane), redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: tk.ID})
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func index(t *testing.T, l *Ledger) Index {
	t.Helper()
	ix, err := l.CampaignIndex(context.Background(), -1)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func wantIndex(t *testing.T, l *Ledger, when string, active, finished []string) {
	t.Helper()
	ix := index(t, l)
	slices.Sort(ix.Finished)
	if !slices.Equal(ix.Active, active) || !slices.Equal(ix.Finished, finished) || ix.FinishedTotal != int64(len(finished)) {
		t.Errorf("%s: index active %v, finished %v (%d); want %v and %v", when, ix.Active, ix.Finished, ix.FinishedTotal, active, finished)
	}
}

func TestCampaignIndexFollowsTheLanesAndRebuildsItself(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	c1 := cancelTasks(t, "c1", 0, 2)
	lane1 := declareAndEnqueue(t, l, "c1", c1[:1])
	wantIndex(t, l, "a lane registered", []string{"c1"}, nil)

	// Sent but not yet found drained: still active, as an enqueue may still come.
	send(t, l, lane1, c1[:1])
	wantIndex(t, l, "drained, not retired", []string{"c1"}, nil)
	if _, err := l.RetireDrained(ctx, []Lane{{Name: lane1, Campaign: "c1"}}); err != nil {
		t.Fatal(err)
	}
	wantIndex(t, l, "its last lane retired", nil, []string{"c1"})

	// An enqueue into a retired lane registers it, and brings the campaign back.
	declareAndEnqueue(t, l, "c1", c1[1:])
	wantIndex(t, l, "enqueued again", []string{"c1"}, nil)

	// A campaign waiting for its time is active.
	if err := l.ScheduleCampaign(ctx, "c2", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c4 := cancelTasks(t, "c4", 10, 1)
	lane4 := declareAndEnqueue(t, l, "c4", c4)
	send(t, l, lane4, c4)
	if _, err := l.RetireDrained(ctx, []Lane{{Name: lane4, Campaign: "c4"}}); err != nil {
		t.Fatal(err)
	}
	wantIndex(t, l, "scheduled, finished", []string{"c1", "c2"}, []string{"c4"})

	// Data from before the index (or from an older wabulk): the next read indexes it, each
	// campaign where its lanes say, and drops what is gone.
	l.rdb.Del(ctx, l.activeKey(), l.finishedKey())
	l.rdb.SAdd(ctx, l.activeKey(), "gone")
	wantIndex(t, l, "rebuilt", []string{"c1", "c2"}, []string{"c4"})
	done, _ := l.rdb.ZScore(ctx, l.nsKey("lanes:done"), lane4).Result()
	if at, _ := l.rdb.ZScore(ctx, l.finishedKey(), "c4").Result(); at != done*1000 {
		t.Errorf("c4 rebuilt as finished at %v, want its lane's drain time %v ms", at, done*1000)
	}

	// Past the retention, the finished campaign's record goes, and its index entry with it.
	l.rdb.ZAdd(ctx, l.nsKey("lanes:done"), redis.Z{Score: float64(time.Now().Add(-2 * time.Hour).Unix()), Member: lane4})
	if n, err := l.CleanUp(ctx, asynq.NewInspectorFromRedisClient(l.rdb), 10); err != nil || n != 1 {
		t.Fatalf("clean up: %d, %v; want the lane of c4 removed", n, err)
	}
	wantIndex(t, l, "after the clean-up", []string{"c1", "c2"}, nil)
	if n, _ := l.rdb.SCard(ctx, l.campaignsKey()).Result(); n != 2 {
		t.Errorf("%d campaigns listed after the clean-up, want 2", n)
	}

	// The finished ones come newest first, as many as asked for.
	for i := range 3 {
		c := "f" + strconv.Itoa(i)
		tasks := cancelTasks(t, c, 100+i, 1)
		lane := declareAndEnqueue(t, l, c, tasks)
		send(t, l, lane, tasks)
		if _, err := l.RetireDrained(ctx, []Lane{{Name: lane, Campaign: c}}); err != nil {
			t.Fatal(err)
		}
		l.rdb.ZAdd(ctx, l.finishedKey(), redis.Z{Score: float64(i), Member: c})
	}
	ix, err := l.CampaignIndex(ctx, 2)
	if err != nil || !slices.Equal(ix.Finished, []string{"f2", "f1"}) || ix.FinishedTotal != 3 {
		t.Errorf("the 2 latest finished: %+v, %v; want f2, f1 of 3", ix, err)
	}
}

func TestRateCountsSendsOverTheLastMinuteAndIsZeroWhilePaused(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	tasks := cancelTasks(t, "c", 0, 60)
	lane := declareAndEnqueue(t, l, "c", tasks)
	started := time.Now().Add(-30 * time.Second)
	l.rdb.HSet(ctx, l.stateKey("c"), "started_at", started.UnixMilli())
	info := func(when string) CampaignInfo {
		t.Helper()
		c, err := l.Campaign(ctx, "c")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		return c
	}

	// 45 sent in the 30 s since the start, and 5 taken by workers but not sent: 1.5/s.
	send(t, l, lane, tasks[:45])
	for _, tk := range tasks[45:50] {
		l.rdb.LRem(ctx, PendingKey(lane), 0, tk.ID)
		l.rdb.LPush(ctx, asynqPrefix(lane)+"active", tk.ID)
	}
	c := info("running")
	since := time.Since(started).Seconds()
	if lo, hi := 45/since, 45/30.0; c.State != StateRunning || c.Rate < lo*0.999 || c.Rate > hi*1.001 {
		t.Errorf("running: state %s, rate %.4f/s; want running at 45 sends over the %.2f s since the start (%.4f to %.4f)",
			c.State, c.Rate, since, lo, hi)
	}
	if c.ETASeconds == nil || math.Abs(*c.ETASeconds-15/c.Rate) > 1e-6 {
		t.Errorf("running: ETA %v, want the 15 left at %.4f/s", c.ETASeconds, c.Rate)
	}

	if _, err := l.PauseCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if c := info("paused"); c.State != StatePaused || c.Rate != 0 || c.ETASeconds != nil {
		t.Errorf("paused: state %s, rate %v, ETA %v; want paused at 0/s with no ETA", c.State, c.Rate, c.ETASeconds)
	}
	if _, err := l.ResumeCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if c := info("resumed"); c.State != StateRunning || c.Rate <= 0 {
		t.Errorf("resumed: state %s, rate %v; want running with the last minute's sends", c.State, c.Rate)
	}

	// Finished: its sends from its start to its end.
	send(t, l, lane, tasks[45:])
	if _, err := l.RetireDrained(ctx, []Lane{{Name: lane, Campaign: "c"}}); err != nil {
		t.Fatal(err)
	}
	c = info("finished")
	if c.State != StateDone || c.FinishedAt == nil || c.StartedAt == nil {
		t.Fatalf("finished: %+v", c)
	}
	if want := 60 / c.FinishedAt.Sub(*c.StartedAt).Seconds(); math.Abs(c.Rate-want) > 1e-9 {
		t.Errorf("finished: rate %v, want 60 over its run, %v", c.Rate, want)
	}
}

func TestRecentSendsKeepOnlyTheWindow(t *testing.T) {
	now := time.Unix(1_700_000_003, 0) // period 340000000, 3 s into it
	cur := now.Unix() / ratePeriod
	h := map[string]string{}
	for _, p := range []int64{cur, cur - 1, cur - ratePeriods + 1, cur - ratePeriods, cur + 1} {
		i := strconv.FormatInt(p%rateSlots, 10)
		h["b"+i], h["n"+i] = strconv.FormatInt(p, 10), "10"
	}
	// cur-ratePeriods shares its slot with cur+1 (rateSlots = ratePeriods+1): the later wins.
	if got := recentSends(now, h); got != 30 {
		t.Errorf("recent sends %d, want the 3 periods of the window, 30 (%v)", got, h)
	}
	if r := sendRate(30, now, time.Time{}); math.Abs(r-30/float64(ratePeriod*(ratePeriods-1)+3)) > 1e-9 {
		t.Errorf("rate %v, want 30 over the window's %d s", r, ratePeriod*(ratePeriods-1)+3)
	}
	if r := sendRate(30, now, now.Add(-10*time.Second)); r != 3 {
		t.Errorf("rate %v of a campaign started 10 s ago, want 3/s", r)
	}
	if r := sendRate(5, now, now); r != 5 {
		t.Errorf("rate %v of a campaign started now, want over 1 s at least: 5/s", r)
	}
}

func TestRetireIdleLeavesLanesWithWorkOrRecentSends(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	var lanes []Lane
	for _, c := range []string{"busy", "recent", "idle"} {
		tasks := cancelTasks(t, c, 0, 2)
		lane := declareAndEnqueue(t, l, c, tasks)
		switch c {
		case "recent":
			send(t, l, lane, tasks)
		case "idle":
			send(t, l, lane, tasks)
			l.rdb.Del(ctx, recentKey(lane)) // its last send two minutes ago
		}
		lanes = append(lanes, Lane{Name: lane, Campaign: c})
	}
	retired, err := l.RetireIdle(ctx, lanes)
	if err != nil || !slices.Equal(retired, []string{lanes[2].Name}) {
		t.Fatalf("retired %v, %v; want only the idle lane", retired, err)
	}
	wantIndex(t, l, "the idle campaign's lane retired", []string{"busy", "recent"}, []string{"idle"})
	// Retired already: not again (its drain time stays).
	if retired, err := l.RetireIdle(ctx, lanes[2:]); err != nil || len(retired) != 0 {
		t.Errorf("retired %v, %v a second time", retired, err)
	}
}
