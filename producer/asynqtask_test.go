package producer_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// These tests hold the producer's batched enqueue (internal/store/asynq.go) to asynq's own
// layout: if a new asynq writes tasks differently, they fail. The producer writes into the lane
// of the campaign and sender (<queue>:<campaign>:<sender digits>), so asynq.Client is given that
// lane as its queue for the comparison.

// asynqEnqueue enqueues f for campaign as asynq.Client would with the producer's options, and
// returns the TaskID.
func asynqEnqueue(t *testing.T, srv *redistest.Server, campaign string, f job.Fields, opts ...asynq.Option) string {
	t.Helper()
	pl, err := job.New(campaign, f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := job.Encode(pl)
	if err != nil {
		t.Fatal(err)
	}
	c := asynq.NewClientFromRedisClient(srv.Client(t))
	id := job.TaskID(pl)
	if _, err := c.EnqueueContext(context.Background(), asynq.NewTask(job.TaskType, data), append(opts, asynq.TaskID(id))...); err != nil {
		t.Fatal(err)
	}
	return id
}

// stored returns a task's hash field msg (the encoded TaskMessage) in asynq queue q and its
// Inspector view with the times that differ between two enqueues cleared.
func stored(t *testing.T, srv *redistest.Server, insp *asynq.Inspector, q, id string) ([]byte, *asynq.TaskInfo) {
	t.Helper()
	msg, err := srv.Client(t).HGet(context.Background(), "asynq:{"+q+"}:t:"+id, "msg").Bytes()
	if err != nil {
		t.Fatalf("HGET msg of %s in %s: %v", id, q, err)
	}
	ti, err := insp.GetTaskInfo(q, id)
	if err != nil {
		t.Fatal(err)
	}
	ti.NextProcessAt = time.Time{}
	return msg, ti
}

func TestProducerWritesTasksAsAsynqDoes(t *testing.T) {
	ln := lane("layout", sender)
	for _, tc := range []struct {
		name string
		cfg  producer.Config
		opts []asynq.Option // what asynq.Client is given for the same task
	}{
		{"defaults", producer.Config{},
			[]asynq.Option{asynq.Queue(ln), asynq.MaxRetry(8), asynq.Retention(24 * time.Hour)}},
		{"set retry and retention", producer.Config{MaxRetry: 3, Retention: 90 * time.Minute},
			[]asynq.Option{asynq.Queue(ln), asynq.MaxRetry(3), asynq.Retention(90 * time.Minute)}},
		{"no retries and a retention in fractions of a second", producer.Config{MaxRetry: -1, Retention: 1500 * time.Millisecond},
			[]asynq.Option{asynq.Queue(ln), asynq.MaxRetry(0), asynq.Retention(1500 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			insp := asynq.NewInspector(srv.ConnOpt(t))
			t.Cleanup(func() { insp.Close() })
			f := job.Fields{To: number(1), From: sender, Type: "document", MediaLink: "https://example.com/a.pdf",
				Filename: "a.pdf", Caption: "Your invoice", Ref: "inv-1"}

			id := asynqEnqueue(t, srv, "layout", f, tc.opts...)
			wantMsg, wantInfo := stored(t, srv, insp, ln, id)
			if err := srv.Client(t).FlushDB(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}

			cfg := tc.cfg
			cfg.Queue = queue
			p, err := producer.New(srv.ConnOpt(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			out, err := p.Send(context.Background(), "layout", f)
			if err != nil || len(out) != 1 || out[0].Status != producer.StatusEnqueued || out[0].TaskID != id {
				t.Fatalf("Send: %+v %v, want %s enqueued", out, err, id)
			}
			gotMsg, gotInfo := stored(t, srv, insp, ln, id)
			if string(gotMsg) != string(wantMsg) {
				t.Fatalf("msg differs from asynq's\n got %x\nwant %x", gotMsg, wantMsg)
			}
			if !reflect.DeepEqual(gotInfo, wantInfo) {
				t.Fatalf("task info differs from asynq's\n got %+v\nwant %+v", gotInfo, wantInfo)
			}
			state, err := srv.Client(t).HGet(context.Background(), "asynq:{"+ln+"}:t:"+id, "state").Result()
			if err != nil || state != "pending" {
				t.Fatalf("state %q %v, want pending", state, err)
			}
			qs, err := insp.Queues()
			if err != nil || !slices.Contains(qs, ln) {
				t.Fatalf("Inspector.Queues() = %v %v, want %q listed", qs, err, ln)
			}
		})
	}
}

func TestAsynqServerProcessesProducerTasks(t *testing.T) {
	b := setup(t, redistest.Options{})
	type seen struct {
		id       string
		maxRetry int
		payload  job.Payload
		err      error
	}
	got := make(chan seen, 1)
	srv := asynq.NewServer(b.srv.ConnOpt(t), asynq.Config{
		Concurrency:       1,
		Queues:            map[string]int{lane("served", sender): 1},
		TaskCheckInterval: 20 * time.Millisecond,
		LogLevel:          asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		var s seen
		s.id, _ = asynq.GetTaskID(ctx)
		s.maxRetry, _ = asynq.GetMaxRetry(ctx)
		if task.Type() != job.TaskType {
			s.err = errors.New("task type " + task.Type())
		} else {
			s.payload, s.err = job.Decode(task.Payload())
		}
		got <- s
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	out, err := b.p.Send(context.Background(), "served", job.Fields{To: number(7), Type: "image", MediaID: "m1", Ref: "r7"})
	if err != nil || len(out) != 1 || out[0].Status != producer.StatusEnqueued {
		t.Fatalf("Send: %+v %v", out, err)
	}
	id := out[0].TaskID
	var s seen
	select {
	case s = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the asynq server did not run the task within 10s")
	}
	wantP := job.Payload{V: job.Version, Campaign: "served", From: sender, To: number(7), Type: "image", MediaID: "m1", Ref: "r7", WASource: "api"}
	if s.err != nil || s.id != id || s.maxRetry != 5 || s.payload != wantP {
		t.Fatalf("handler saw id %q max retry %d payload %+v (%v); want %q, 5, %+v", s.id, s.maxRetry, s.payload, s.err, id, wantP)
	}
	var ti *asynq.TaskInfo
	testkit.Eventually(t, 10*time.Second, "the task to be completed after its handler returned", func() bool {
		ti, err = b.insp.GetTaskInfo(lane("served", sender), id)
		return err == nil && ti.State == asynq.TaskStateCompleted
	}, func() string { return fmt.Sprintf("task %+v, %v", ti, err) })
	if ti.Retention != time.Hour || ti.CompletedAt.IsZero() {
		t.Fatalf("completed task retention %v completed at %v, want 1h and a time", ti.Retention, ti.CompletedAt)
	}
	// Within the retention the completed task still holds its TaskID.
	if out, err := b.p.Send(context.Background(), "served", job.Fields{To: number(7), Type: "image", MediaID: "m1", Ref: "r7"}); err != nil || out[0].Status != producer.StatusDuplicate {
		t.Fatalf("Send again: %+v %v, want a duplicate", out, err)
	}
}

func TestOneBatchGivesEachRecipientItsOwnOutcome(t *testing.T) {
	b := setup(t, redistest.Options{})
	ctx := context.Background()
	// number(2) is already held in the campaign's lane, enqueued there by asynq itself.
	held := asynqEnqueue(t, b.srv, "mix", job.Fields{To: number(2), From: sender, Type: "image", MediaID: "m"},
		asynq.Queue(lane("mix", sender)))
	// One Send is one batch, and a batch costs one script call whatever its size once its lane
	// is live: the enqueue script writes (and counts) all its tasks and reads the lane's live
	// flag; only a lane that is not live yet costs a registration call after it (the registry
	// lives in the namespace's hash slot, not the lane's). The warm-up, on the same lane, loads
	// the scripts and declares and registers the lane (a producer declares a lane once a
	// minute, before its tasks are written).
	if _, err := b.p.Send(ctx, "mix", job.Fields{To: number(9), Type: "image", MediaID: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Client(t).ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	out, err := b.p.Send(ctx, "mix", job.Fields{Type: "image", MediaID: "m",
		To: strings.Join([]string{number(1), "12", number(2), number(3), number(3)}, ", ")})
	if err != nil {
		t.Fatal(err)
	}
	got := outcomeLines(out)
	want := []string{
		number(1) + " enqueued mix:919800000001:919800000001",
		"12 rejected ",
		number(2) + " duplicate " + held,
		number(3) + " enqueued mix:919800000001:919800000003",
		number(3) + " duplicate mix:919800000001:919800000003",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("outcomes\n got %q\nwant %q", got, want)
	}
	if calls := b.srv.Info(t, "commandstats", "cmdstat_evalsha"); !strings.HasPrefix(calls, "calls=1,") {
		t.Fatalf("EVALSHA stats %q, want one call for the whole message (the lane is live)", calls)
	}
	if calls := b.srv.Info(t, "commandstats", "cmdstat_eval"); calls != "" {
		t.Fatalf("EVAL stats %q, want none (the scripts were loaded by the warm-up)", calls)
	}
	if ids := queued(t, b.insp); len(ids) != 4 {
		t.Fatalf("%d tasks pending, want 4 (warm-up, held, two new)", len(ids))
	}
	c, err := b.led.Counts(ctx, "mix")
	if err != nil || c.Enqueued != 3 {
		t.Fatalf("ledger %+v %v, want 3 enqueued (the warm-up and the two new)", c, err)
	}
}

func TestCampaignMixGivesExactOutcomesAndSummary(t *testing.T) {
	srv := redistest.Start(t)
	// One worker: rows are enqueued in file order, so which of two equal rows is the duplicate
	// is fixed.
	p, err := producer.New(srv.ConnOpt(t), producer.Config{Queue: queue, DefaultFrom: sender, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	// number(2) is held in its lane already, put there by asynq itself: a duplicate.
	held := asynqEnqueue(t, srv, "mix", job.Fields{To: number(2), From: sender, Type: "image", MediaID: "m"}, asynq.Queue(lane("mix", sender)))
	in := "to,type,media_id\n" +
		number(1) + ",image,m\n" +
		"98x,image,m\n" +
		number(2) + ",image,m\n" +
		number(3) + ",image,m\n" +
		number(3) + ",video,m\n" +
		"\"" + number(4) + "," + number(4) + "\",image,m\n" +
		number(5) + ",sticker,\n"
	s, got, err := run(t, p, "mix", producer.ReadCSV(strings.NewReader(in)), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s != (producer.Summary{Enqueued: 3, Duplicates: 3, Rejected: 2}) {
		t.Fatalf("summary %+v", s)
	}
	lines := outcomeLines(got)
	want := []string{
		number(1) + " enqueued mix:919800000001:919800000001",
		"98x rejected ",
		number(2) + " duplicate " + held,
		number(3) + " enqueued mix:919800000001:919800000003",
		number(3) + " duplicate mix:919800000001:919800000003",
		number(4) + " enqueued mix:919800000001:919800000004",
		number(4) + " duplicate mix:919800000001:919800000004",
		number(5) + " rejected ",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("outcomes\n got %q\nwant %q", lines, want)
	}
}

// outcomeLines gives each outcome as "to status taskid", for comparing whole runs.
func outcomeLines(out []producer.Outcome) []string {
	var lines []string
	for _, o := range out {
		lines = append(lines, o.To+" "+string(o.Status)+" "+o.TaskID)
	}
	return lines
}
