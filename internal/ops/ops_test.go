package ops

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

const testQueue = "wa-test"

// bundle is what a test needs around one queue on a fresh real Redis.
type bundle struct {
	ops    *Ops
	rdb    *redis.Client
	conn   asynq.RedisConnOpt
	ledger *store.Ledger
	client *asynq.Client
	insp   *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	conn := srv.ConnOpt(t)
	o, err := New(Config{Redis: conn, Queue: testQueue, MaxRetry: 3, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	rdb := srv.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	return &bundle{ops: o, rdb: rdb, conn: conn, ledger: store.New(rdb, testQueue, time.Hour), client: client, insp: insp}
}

// enqueue puts one job per recipient in the campaign's lane (the worker's default sender) and
// counts them in the ledger, as the producer does, and returns their TaskIDs.
func (b *bundle) enqueue(t *testing.T, campaign string, to ...string) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	var tasks []store.Task
	for i, n := range to {
		p, err := job.New(campaign, job.Fields{To: n, Type: "image", MediaLink: "https://example.com/a.jpg", Ref: "r" + string(rune('0'+i))})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := job.Encode(p)
		tasks = append(tasks, store.Task{ID: job.TaskID(p), Payload: raw})
		ids = append(ids, job.TaskID(p))
	}
	ln := store.Lane{Campaign: campaign}
	if _, _, err := b.ledger.Enqueuer(job.TaskType, 3).Enqueue(ctx, b.lane(campaign), tasks, true); err != nil {
		t.Fatal(err)
	}
	if err := b.ledger.RegisterLane(ctx, ln, false); err != nil {
		t.Fatal(err)
	}
	return ids
}

// lane is the lane of campaign's jobs, which name no sender.
func (b *bundle) lane(campaign string) string { return b.ledger.LaneName(campaign, "") }

// kill dead-letters a job as the worker does: the ledger's record first, then asynq's archive.
func (b *bundle) kill(t *testing.T, id, code string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	lane, _ := b.ledger.LaneOfTask(id)
	info, err := b.insp.GetTaskInfo(lane, id)
	if err != nil {
		t.Fatal(err)
	}
	p, err := job.Decode(info.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ledger.Dead(ctx, lane, store.DeadLetter{TaskID: id, Code: code, Status: 400, Message: code + " message",
		Time: at, Attempt: 1, Payload: p}); err != nil {
		t.Fatal(err)
	}
	if err := b.insp.ArchiveTask(lane, id); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) counts(t *testing.T, campaign string) store.Counts {
	t.Helper()
	st, err := b.ops.Status(context.Background(), campaign)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Campaigns) != 1 {
		t.Fatalf("status of %s: %d campaigns", campaign, len(st.Campaigns))
	}
	return st.Campaigns[0].Counts
}

var numbers = []string{"+919876543210", "+919876543211", "+919876543212", "+14155550123", "+447911123456"}

func TestStatusFollowsRetriesDeadLettersAndRedrives(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	ids := b.enqueue(t, "c1", numbers[:4]...)
	b.enqueue(t, "c2", numbers[4])

	st, err := b.ops.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Queue.Pending != 5 || !st.Queue.Exists || st.Queue.Paused {
		t.Errorf("queue counts %+v, want 5 pending", st.Queue)
	}
	if got := []string{st.Campaigns[0].Campaign, st.Campaigns[1].Campaign}; !reflect.DeepEqual(got, []string{"c1", "c2"}) {
		t.Errorf("campaigns %v, want [c1 c2]", got)
	}

	// ids[0]: a retry, then sent. ids[1], ids[2]: dead letters. ids[3]: still pending.
	lane := b.lane("c1")
	outcome, taken, err := b.ledger.Take(ctx, lane, true)
	if err != nil || outcome != store.TakeTaken || taken.ID != ids[0] {
		t.Fatalf("take: %d %+v %v, want %s", outcome, taken, err, ids[0])
	}
	if err := b.ledger.Retry(ctx, lane, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.ledger.RetryTask(ctx, taken, time.Now().Add(time.Hour), "WA500: later", true); err != nil {
		t.Fatal(err)
	}
	if got := b.counts(t, "c1"); got.Retry != 1 || got.Pending != 3 || got.Retries != 1 {
		t.Errorf("after a retry: %+v", got)
	}
	// Its retry ran and was sent: asynq completes it.
	if err := b.ledger.Sent(ctx, lane, ids[0], []byte(`{"id":"m1"}`)); err != nil {
		t.Fatal(err)
	}
	b.rdb.ZRem(ctx, "asynq:{"+lane+"}:retry", ids[0])
	b.rdb.ZAdd(ctx, store.CompletedKey(lane), redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: ids[0]})
	now := time.Now().UTC()
	b.kill(t, ids[1], "E110", now.Add(-time.Minute))
	b.kill(t, ids[2], "WA400", now)

	want := store.Counts{Campaign: "c1", Enqueued: 4, Pending: 1, Completed: 1, Dead: 2, Retries: 1,
		DeadCodes: map[string]int64{"E110": 1, "WA400": 1}}
	if diff := diff(want, b.counts(t, "c1")); diff != "" {
		t.Errorf("after sent and two dead letters (-want +got):\n%s", diff)
	}

	rep, err := b.ops.Redrive(ctx, DeadFilter{Campaign: "c1", Code: "E110"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diff(RedriveReport{Matched: 1, Redriven: 1, ByCode: map[string]int{"E110": 1}}, rep); diff != "" {
		t.Errorf("redrive report (-want +got):\n%s", diff)
	}
	want = store.Counts{Campaign: "c1", Enqueued: 4, Pending: 2, Completed: 1, Dead: 1, Retries: 1, Redriven: 1,
		DeadCodes: map[string]int64{"WA400": 1}}
	if diff := diff(want, b.counts(t, "c1")); diff != "" {
		t.Errorf("after redriving the E110 (-want +got):\n%s", diff)
	}
	// The dead letter is back in its lane with a fresh retry budget.
	info, err := b.insp.GetTaskInfo(lane, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStatePending || info.Retried != 0 || info.MaxRetry != 3 {
		t.Errorf("redriven task: state %v, retried %d, max retry %d; want pending, 0, 3", info.State, info.Retried, info.MaxRetry)
	}
	q, err := b.ops.QueueCounts("")
	if err != nil {
		t.Fatal(err)
	}
	if q.Archived != 1 || q.Scheduled != 0 || q.Pending != 3 || q.Completed != 1 {
		t.Errorf("queue after redrive: %+v, want 1 archived, 3 pending (the redriven job, c1's last, c2's), 1 completed", q)
	}

	if _, err := b.ops.Status(ctx, "nope"); !errors.Is(err, ErrUnknownCampaign) {
		t.Errorf("status of an unknown campaign: %v, want ErrUnknownCampaign", err)
	}
}

func TestDeadLettersFilterByCampaignCodeAndLimit(t *testing.T) {
	b := setup(t)
	b.ops.cfg.PII = logging.Masker{}
	ctx := context.Background()
	c1 := b.enqueue(t, "c1", numbers[:3]...)
	c2 := b.enqueue(t, "c2", numbers[3:5]...)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b.kill(t, c1[0], "E110", t0)
	b.kill(t, c1[1], "E110", t0.Add(2*time.Second))
	b.kill(t, c1[2], "WA400", t0.Add(time.Second))
	b.kill(t, c2[0], "E110", t0.Add(3*time.Second))

	ids := func(ds []DeadEntry) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.TaskID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    DeadFilter
		want []string
	}{
		{"every campaign, newest first", DeadFilter{}, []string{c2[0], c1[1], c1[2], c1[0]}},
		{"one campaign", DeadFilter{Campaign: "c1"}, []string{c1[1], c1[2], c1[0]}},
		{"one code across campaigns", DeadFilter{Code: "E110"}, []string{c2[0], c1[1], c1[0]}},
		{"campaign and code", DeadFilter{Campaign: "c1", Code: "WA400"}, []string{c1[2]}},
		{"limit keeps the newest", DeadFilter{Limit: 2}, []string{c2[0], c1[1]}},
		{"unknown code", DeadFilter{Code: "RBC001"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.ops.DeadLetters(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string // the recipient in a task id is masked as in To
			for _, id := range tc.want {
				want = append(want, b.ops.cfg.PII.TaskID(id))
			}
			if diff := diff(want, ids(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	got, err := b.ops.DeadLetters(ctx, DeadFilter{Campaign: "c1", Code: "WA400"})
	if err != nil {
		t.Fatal(err)
	}
	want := DeadEntry{Campaign: "c1", TaskID: "c1:default:91******3212", To: "+91******3212", Type: "image", Ref: "r2", Code: "WA400",
		Status: 400, Message: "WA400 message", Attempt: 1, Time: t0.Add(time.Second)}
	if diff := diff([]DeadEntry{want}, got); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
	b.ops.cfg.PII = logging.Masker{Full: true}
	if got, _ := b.ops.DeadLetters(ctx, DeadFilter{Campaign: "c1", Code: "WA400"}); got[0].To != numbers[2] || got[0].TaskID != c1[2] {
		t.Errorf("with PII full, to = %q, task id %q, want %q, %q", got[0].To, got[0].TaskID, numbers[2], c1[2])
	}
}

func TestRedriveSkipsSentAndIsIdempotent(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	ids := b.enqueue(t, "c1", numbers[:3]...)
	// ids[0] has a sent marker beside its dead-letter record, as a version of wabulk whose Sent
	// did not remove such records left them (a redrive that enqueued the job and stopped
	// before removing the record, after which a worker sent it). It must not go out again.
	lane := b.lane("c1")
	if err := b.ledger.Sent(ctx, lane, ids[0], []byte(`{"id":"m"}`)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range ids {
		b.kill(t, id, "E110", now)
	}
	// ids[1] is already back in the queue (pending) but still has its record: the same stop,
	// before the job ran.
	if err := b.insp.RunTask(lane, ids[1]); err != nil {
		t.Fatal(err)
	}

	dry, err := b.ops.Redrive(ctx, DeadFilter{Campaign: "c1"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diff(RedriveReport{DryRun: true, Matched: 3, Redriven: 2, AlreadySent: 1, ByCode: map[string]int{"E110": 2}}, dry); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if got := b.counts(t, "c1"); got.Dead != 3 {
		t.Errorf("a dry run changed the counts: %+v", got)
	}

	rep, err := b.ops.Redrive(ctx, DeadFilter{Campaign: "c1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diff(RedriveReport{Matched: 3, Redriven: 1, AlreadySent: 1, AlreadyQueued: 1, ByCode: map[string]int{"E110": 1}}, rep); diff != "" {
		t.Errorf("redrive (-want +got):\n%s", diff)
	}
	if info, err := b.insp.GetTaskInfo(lane, ids[0]); err != nil || info.State != asynq.TaskStateArchived {
		t.Errorf("the sent job was enqueued again: %+v %v", info, err)
	}
	want := store.Counts{Campaign: "c1", Enqueued: 3, Pending: 2, Completed: 1, Redriven: 3}
	if diff := diff(want, b.counts(t, "c1")); diff != "" {
		t.Errorf("counts after redrive (-want +got):\n%s", diff)
	}
	again, err := b.ops.Redrive(ctx, DeadFilter{Campaign: "c1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diff(RedriveReport{}, again); diff != "" {
		t.Errorf("second redrive found work (-want +got):\n%s", diff)
	}
}

func TestPauseResumeAndQueues(t *testing.T) {
	b := setup(t)
	b.enqueue(t, "c1", numbers[0])
	if err := b.ops.Pause(""); err != nil {
		t.Fatal(err)
	}
	list, err := b.ops.Queues(context.Background(), DefaultFinished)
	if err != nil {
		t.Fatal(err)
	}
	if qs := list.Queues; len(qs) != 2 || qs[0].Queue != testQueue || !qs[0].Paused || qs[0].Pending != 1 ||
		qs[1].Queue != b.lane("c1") || !qs[1].Paused {
		t.Fatalf("queues after pause: %+v", list)
	}
	// A lane registered while the namespace is paused is paused too.
	b.enqueue(t, "c2", numbers[1])
	if q, err := b.ops.QueueCounts(b.lane("c2")); err != nil || !q.Paused {
		t.Fatalf("a lane registered during the pause: %+v, %v", q, err)
	}
	if err := b.ops.Resume(""); err != nil {
		t.Fatal(err)
	}
	if q, err := b.ops.QueueCounts(""); err != nil || q.Paused {
		t.Fatalf("after resume: %+v, %v", q, err)
	}
}

// diff returns "" when want and got are deeply equal, else both, one per line.
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return fmt.Sprintf("- %+v\n+ %+v", want, got)
}

func TestStatusOnAQueueNeverUsedIsEmptyNotAnError(t *testing.T) {
	b := setup(t)
	q, err := b.ops.QueueCounts("")
	if err != nil || q.Exists || q.Pending != 0 {
		t.Fatalf("QueueCounts on a fresh Redis = %+v, %v; want an empty queue that does not exist yet", q, err)
	}
	if _, err := b.ops.Status(context.Background(), "spring"); !errors.Is(err, ErrUnknownCampaign) {
		t.Fatalf("Status of a campaign on a fresh Redis: %v, want ErrUnknownCampaign", err)
	}
	st, err := b.ops.Status(context.Background(), "")
	if err != nil || len(st.Campaigns) != 0 {
		t.Fatalf("Status of all on a fresh Redis = %+v, %v", st, err)
	}
}
