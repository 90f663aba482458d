package ops

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

const viewSender = "+919000000001"

// viewTasks are n jobs of campaign c.
func viewTasks(t testing.TB, c string, n int) []store.Task {
	t.Helper()
	tasks := make([]store.Task, n)
	for i := range tasks {
		p := job.Payload{V: job.Version, Campaign: c, From: viewSender, To: fmt.Sprintf("+9198%08d", i), Type: "image",
			MediaLink: "https://example.com/a.png", WASource: job.DefaultSource}
		b, err := job.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		tasks[i] = store.Task{ID: job.TaskID(p), Payload: b}
	}
	return tasks
}

// parallel runs fn(i) for i in [0, n) on 8 goroutines and fails the test on the first error.
func parallel(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// fillNamespace writes finished+active campaigns of one lane each, as the system does: the
// producer's enqueue path (declare, write, register), then for the finished ones Kaleyra's
// answer through the ledger, asynq taking the task off its pending list and the workers'
// upkeep retiring the drained lane, except for the last `unretired` finished ones, left live
// as by workers that stopped before they retired them (two minutes ago: no recent sends). Each
// active campaign has 3 jobs, one of them sent; every tenth is paused.
func fillNamespace(t *testing.T, l *store.Ledger, rdb *redis.Client, finished, unretired, active int) {
	t.Helper()
	ctx := context.Background()
	enq := l.Enqueuer(job.TaskType, 3)
	name := func(i int) string {
		if i < finished {
			return "done-" + strconv.Itoa(i)
		}
		return "run-" + strconv.Itoa(i-finished)
	}
	parallel(t, finished+active, func(i int) error {
		c := name(i)
		n := 1
		if i >= finished {
			n = 3
		}
		ln := store.Lane{Campaign: c, Sender: viewSender}
		lane := l.LaneName(c, viewSender)
		if err := l.DeclareLane(ctx, ln, false); err != nil {
			return err
		}
		if _, _, err := enq.Enqueue(ctx, lane, viewTasks(t, c, n), true); err != nil {
			return err
		}
		return l.RegisterLane(ctx, ln, false)
	})
	stop := l.Batch(64)
	parallel(t, finished+active, func(i int) error {
		c := name(i)
		lane := l.LaneName(c, viewSender)
		tk := viewTasks(t, c, 1)[0]
		if err := l.Sent(ctx, lane, tk.ID, []byte(`{"id":"wamid.1"}`)); err != nil {
			return err
		}
		return rdb.LRem(ctx, store.PendingKey(lane), 0, tk.ID).Err()
	})
	stop()
	const chunk = 100
	retire := finished - unretired
	parallel(t, (retire+chunk-1)/chunk, func(k int) error {
		var lanes []store.Lane
		for i := k * chunk; i < min(retire, (k+1)*chunk); i++ {
			lanes = append(lanes, store.Lane{Name: l.LaneName(name(i), viewSender), Campaign: name(i), Sender: "919000000001"})
		}
		retired, err := l.RetireDrained(ctx, lanes)
		if err == nil && len(retired) != len(lanes) {
			err = fmt.Errorf("retired %d of %d drained lanes", len(retired), len(lanes))
		}
		return err
	})
	for i := retire; i < finished; i++ {
		rdb.Del(ctx, "wabulk:{"+l.LaneName(name(i), viewSender)+"}:recent")
	}
	for i := finished; i < finished+active; i += 10 {
		if _, err := l.PauseCampaign(ctx, name(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// commands is how many commands the Redis server has run, Lua scripts' own calls included, as
// INFO commandstats counts them (this INFO not included).
func commands(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	out, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		_, rest, ok := strings.Cut(sc.Text(), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, _ := strconv.ParseInt(calls, 10, 64)
		n += v
	}
	return n
}

// TestViewsCostFollowsActiveCampaigns: with 5,000 finished campaigns kept beside 100 active ones,
// status, campaign ls, queue ls and the lane exporter issue a number of Redis commands bounded by
// the campaigns they show (the active ones and the 10 most recently finished), not by those
// kept for the retention. 500 of the finished ones were left live by stopped workers: the first
// view retires their lanes, and they cost nothing after.
func TestViewsCostFollowsActiveCampaigns(t *testing.T) {
	const finished, unretired, active = 5000, 500, 100
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	o, err := New(Config{Redis: srv.ConnOpt(t), Queue: testQueue, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	l := store.New(rdb, testQueue, time.Hour)
	start := time.Now()
	fillNamespace(t, l, rdb, finished, unretired, active)
	t.Logf("%d finished and %d active campaigns written in %v", finished, active, time.Since(start).Round(time.Millisecond))

	exp := metrics.NewExporter(store.New(rdb, testQueue, time.Hour))
	reg := prometheus.NewRegistry()
	reg.MustRegister(exp)
	ectx, stopExp := context.WithCancel(ctx)
	expDone := make(chan struct{})
	go func() { exp.Run(ectx); close(expDone) }()
	t.Cleanup(func() { stopExp(); <-expDone })
	testkit.Eventually(t, 5*time.Second, "the exporter to take the lease", exp.Leader)

	// The views warm up once (the scripts' cache, the index checked), then are counted.
	shown := active + DefaultFinished
	views := []struct {
		name string
		view func(check bool) error
	}{
		{"status", func(check bool) error {
			st, err := o.Status(ctx, "")
			if err == nil && check && (len(st.Campaigns) != shown || st.FinishedCampaigns != finished || st.UnlistedFinished != finished-DefaultFinished ||
				st.Queue.Pending != 2*active || st.Queue.Completed != 0) {
				err = fmt.Errorf("%d campaigns shown, finished %d (%d not listed), queue %+v; want %d shown of %d finished and %d pending",
					len(st.Campaigns), st.FinishedCampaigns, st.UnlistedFinished, st.Queue, shown, finished, 2*active)
			}
			return err
		}},
		{"campaign ls", func(check bool) error {
			list, err := o.ListCampaigns(ctx, DefaultFinished)
			if err == nil && check && (len(list.Campaigns) != shown || list.Finished != finished) {
				err = fmt.Errorf("%d campaigns listed, %d finished; want %d of %d", len(list.Campaigns), list.Finished, shown, finished)
			}
			return err
		}},
		{"queue ls", func(check bool) error {
			list, err := o.Queues(ctx, DefaultFinished)
			if err == nil && check && (len(list.Queues) != 1+shown || list.More != finished-DefaultFinished || list.Queues[0].Pending != 2*active) {
				err = fmt.Errorf("%d queues listed, %d more, namespace %+v; want 1+%d, %d more", len(list.Queues), list.More,
					list.Queues[0], shown, finished-DefaultFinished)
			}
			return err
		}},
		{"/metrics (lane exporter)", func(check bool) error {
			mfs, err := reg.Gather()
			if err != nil {
				return err
			}
			var lanes int
			for _, mf := range mfs {
				if mf.GetName() == metrics.LaneTasks.Name {
					lanes = len(mf.GetMetric())
				}
			}
			if check && lanes != 6*(active-active/10) {
				return fmt.Errorf("%d lane task series, want 6 for each of the %d active lanes not paused", lanes, active-active/10)
			}
			return nil
		}},
	}
	// Per campaign shown: its lane's counts, state and priority reads (about 20 commands, Lua
	// scripts' calls included) and its queue's stats script (about 14). Past that, a few dozen
	// commands whatever the namespace holds.
	const perCampaign, fixed = 40, 100
	for _, v := range views {
		before := commands(t, rdb)
		if err := v.view(false); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		t.Logf("%s, first: %d Redis commands", v.name, commands(t, rdb)-before-1)
		before = commands(t, rdb)
		t0 := time.Now()
		if err := v.view(true); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		took := time.Since(t0)
		n := commands(t, rdb) - before - 1 // the INFO above
		t.Logf("%s: %d Redis commands, %v", v.name, n, took.Round(time.Microsecond))
		if limit := int64(perCampaign*shown + fixed); n > limit {
			t.Errorf("%s issued %d Redis commands with %d finished and %d active campaigns: want at most %d (%d per campaign shown + %d)",
				v.name, n, finished, active, limit, perCampaign, fixed)
		}
	}

	// Finished campaigns are listed on request, newest first, up to the limit.
	list, err := o.ListCampaigns(ctx, 200)
	if err != nil || len(list.Campaigns) != active+200 || list.Unlisted != finished-200 {
		t.Fatalf("campaign ls --limit 200: %d listed, %d unlisted, %v; want %d and %d", len(list.Campaigns), list.Unlisted, err, active+200, finished-200)
	}
}
