package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

// snapshot is every key of the Redis with its serialized value.
func snapshot(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range rdb.Keys(ctx, "*").Val() {
		out[k] = rdb.Dump(ctx, k).Val()
	}
	return out
}

// TestMigrateMovesTheLegacySingleQueueIntoLanes: a Redis as an older wabulk left it, its single
// queue (the asynq queue named after the namespace) holding tasks in every state, written by
// asynq itself (asynq.Client, and an asynq.Server standing in for an old worker), with the old
// ledger records beside them. `wabulk migrate` refuses while the old worker runs; its dry run
// changes nothing; the real run moves every task into its lane with its TaskID and retry count,
// keeps the campaign's counts, makes a second enqueue of the campaign all duplicates, and a
// worker then sends the waiting jobs exactly once and the sent ones never again. A second run
// changes nothing.
func TestMigrateMovesTheLegacySingleQueueIntoLanes(t *testing.T) {
	const ns, campaign = "whatsapp", "old"
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	env := []string{"WABULK_REDIS_URL=" + srv.URL}
	led := store.New(rdb, ns, time.Hour)

	payload := func(i int, from string) (job.Payload, []byte) {
		p, err := job.New(campaign, job.Fields{To: fmt.Sprintf("+91987650%04d", i), From: from, Type: "image",
			MediaLink: "https://example.com/a.png", Ref: fmt.Sprintf("r%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := job.Encode(p)
		return p, b
	}
	client := asynq.NewClient(srv.ConnOpt(t))
	defer client.Close()
	enqueue := func(i int, from string, opts ...asynq.Option) string {
		p, b := payload(i, from)
		id := job.TaskID(p)
		opts = append([]asynq.Option{asynq.Queue(ns), asynq.TaskID(id), asynq.MaxRetry(3), asynq.Retention(time.Hour)}, opts...)
		if _, err := client.Enqueue(asynq.NewTask(job.TaskType, b), opts...); err != nil {
			t.Fatal(err)
		}
		return id
	}
	ids := map[int]string{}
	for i := 1; i <= 8; i++ {
		p, _ := payload(i, testkit.Sender)
		ids[i] = job.TaskID(p)
	}

	// An old worker: job 4 fails once (retry), job 5 is sent (completed, with Kaleyra's answer
	// as its result), job 6 is refused for good (archived).
	answer5 := `{"id":"wamid.old5"}`
	old := asynq.NewServer(srv.ConnOpt(t), asynq.Config{Concurrency: 2, Queues: map[string]int{ns: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel})
	err := old.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		switch id, _ := asynq.GetTaskID(ctx); id {
		case ids[4]:
			return errors.New("WA500: try later")
		case ids[5]:
			task.ResultWriter().Write([]byte(answer5))
			return nil
		}
		return fmt.Errorf("WA400: refused: %w", asynq.SkipRetry)
	}))
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(srv.ConnOpt(t))
	defer insp.Close()
	state := func(queue, id string) asynq.TaskState {
		ti, err := insp.GetTaskInfo(queue, id)
		if err != nil {
			return 0
		}
		return ti.State
	}
	enqueue(4, testkit.Sender)
	enqueue(5, testkit.Sender)
	enqueue(6, testkit.Sender)
	testkit.Eventually(t, 10*time.Second, "the old worker's outcomes", func() bool {
		return state(ns, ids[4]) == asynq.TaskStateRetry && state(ns, ids[5]) == asynq.TaskStateCompleted &&
			state(ns, ids[6]) == asynq.TaskStateArchived
	})
	if r := runCLI(t, env, "migrate"); r.code == 0 || !strings.Contains(r.stderr, "stop the old workers") {
		t.Errorf("migrate while an old worker serves the single queue: %+v, want a refusal telling to stop it", r)
	}
	old.Shutdown()
	// Job 4's retry falls due in 3 s.
	rdb.ZAddXX(ctx, "asynq:{"+ns+"}:retry", redis.Z{Score: float64(time.Now().Add(3 * time.Second).Unix()), Member: ids[4]})

	// Waiting jobs: two pending, one scheduled, one of the second sender; and a task whose
	// payload is not a job.
	enqueue(1, testkit.Sender)
	enqueue(2, testkit.Sender)
	enqueue(3, testkit.Sender, asynq.ProcessIn(3*time.Second))
	p8, b8 := payload(8, testkit.Sender2)
	ids[8] = job.TaskID(p8)
	if _, err := client.Enqueue(asynq.NewTask(job.TaskType, b8), asynq.Queue(ns), asynq.TaskID(ids[8]), asynq.MaxRetry(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask(job.TaskType, []byte("not json")), asynq.Queue(ns), asynq.TaskID("poison-1")); err != nil {
		t.Fatal(err)
	}
	// The old ledger: the campaign's scope counts 8 jobs (job 7 was sent, its task since
	// expired, its marker kept), job 4's retry, the sent markers of 5 and 7, job 6's dead letter.
	scope := func(what string) string { return "wabulk:{" + ns + ":" + campaign + "}:" + what }
	p6, _ := payload(6, testkit.Sender)
	rec6, _ := json.Marshal(store.DeadLetter{TaskID: ids[6], Code: "WA400", Status: 400, Message: "refused", Time: time.Now().UTC(), Attempt: 1, Payload: p6})
	answer7 := `{"id":"wamid.old7"}`
	pipe := rdb.Pipeline()
	pipe.HSet(ctx, scope("counts"), "enqueued", 8, "completed", 2, "dead", 1, "retries", 1, "suppressed", 1)
	pipe.HSet(ctx, scope("sent"), ids[5], answer5, ids[7], answer7)
	pipe.Expire(ctx, scope("sent"), time.Hour)
	pipe.HSet(ctx, scope("dead"), ids[6], rec6)
	pipe.HSet(ctx, scope("deadcodes"), "WA400", 1)
	pipe.SAdd(ctx, scope("retry"), ids[4])
	pipe.HSet(ctx, scope("dlv"), ids[5], fmt.Sprintf("delivered||%d", time.Now().Unix()))
	pipe.SAdd(ctx, scope("suppressed"), "+919999999999")
	pipe.Set(ctx, "wabulk:"+ns+":m:{wamid.old5}", ns+":"+campaign+" "+ids[5], time.Hour)
	pipe.SAdd(ctx, "wabulk:{"+ns+"}:campaigns", campaign)
	pipe.SAdd(ctx, "wabulk:{"+ns+"}:campaigns:active", campaign)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// The counts an older wabulk showed: waiting = enqueued − sent − dead − retrying.
	want := store.Counts{Campaign: campaign, Enqueued: 8, Pending: 4, Retry: 1, Completed: 2, Dead: 1, Retries: 1,
		Suppressed: 1, DeadCodes: map[string]int64{"WA400": 1}}
	counts := func() store.Counts {
		t.Helper()
		r := runCLI(t, env, "status", "--campaign", campaign, "--json")
		var st ops.Status
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Campaigns) != 1 {
			t.Fatalf("status: %+v", r)
		}
		return st.Campaigns[0].Counts
	}

	before := snapshot(t, rdb)
	r := runCLI(t, env, "migrate", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "dry run: nothing changed") ||
		!strings.Contains(r.stdout, "tasks to move into their lanes: 7 (3 pending, 1 scheduled, 1 retry, 1 archived, 1 completed)") ||
		!strings.Contains(r.stdout, "sent markers to move: 2") || !strings.Contains(r.stdout, "dead letters to move: 1") {
		t.Fatalf("migrate --dry-run: %+v", r)
	}
	if after := snapshot(t, rdb); !reflect.DeepEqual(before, after) {
		t.Fatalf("the dry run changed Redis: %d keys before, %d after", len(before), len(after))
	}

	r = runCLI(t, env, "migrate")
	if r.code != 0 || !strings.Contains(r.stdout, "tasks moved into their lanes: 7") || !strings.Contains(r.stdout, "undecodable tasks moved to the dead letters of _undecodable: 1") {
		t.Fatalf("migrate: %+v", r)
	}
	t.Logf("migrate:\n%s", r.stdout)
	// Nothing of the single queue is left: its keys, its entry in asynq's list, the old records.
	if left := rdb.Keys(ctx, "asynq:{"+ns+"}:*").Val(); len(left) != 0 {
		t.Errorf("keys of the single queue left: %v", left)
	}
	if rdb.SIsMember(ctx, "asynq:queues", ns).Val() {
		t.Error("asynq still lists the single queue")
	}
	for _, what := range []string{"sent", "dead", "deadcodes", "retry", "dlv"} {
		if rdb.Exists(ctx, scope(what)).Val() != 0 {
			t.Errorf("old record %s left", scope(what))
		}
	}
	if rdb.SCard(ctx, scope("suppressed")).Val() != 1 {
		t.Error("the campaign's suppressed set did not stay")
	}
	// Every task in its lane, under its TaskID, with its retry count.
	laneA, laneB := led.LaneName(campaign, testkit.Sender), led.LaneName(campaign, testkit.Sender2)
	for _, c := range []struct {
		lane, id string
		state    asynq.TaskState
		retried  int
	}{
		{laneA, ids[1], asynq.TaskStatePending, 0}, {laneA, ids[2], asynq.TaskStatePending, 0},
		{laneA, ids[3], asynq.TaskStateScheduled, 0}, {laneA, ids[4], asynq.TaskStateRetry, 1},
		{laneA, ids[5], asynq.TaskStateCompleted, 0}, {laneA, ids[6], asynq.TaskStateArchived, 0},
		{laneA, ids[7], asynq.TaskStateCompleted, 0}, {laneB, ids[8], asynq.TaskStatePending, 0},
	} {
		ti, err := insp.GetTaskInfo(c.lane, c.id)
		if err != nil {
			t.Errorf("%s in %s: %v", c.id, c.lane, err)
			continue
		}
		if ti.State != c.state || ti.Retried != c.retried || ti.Queue != c.lane || ti.Type != job.TaskType {
			t.Errorf("%s: %+v, want %v in %s, retried %d", c.id, ti, c.state, c.lane, c.retried)
		}
	}
	for id, a := range map[string]string{ids[5]: answer5, ids[7]: answer7} {
		if ti, err := insp.GetTaskInfo(laneA, id); err != nil || string(ti.Result) != a {
			t.Errorf("%s's result (the sent marker): %+v %v, want %s", id, ti, err, a)
		}
	}
	var poison []store.DeadLetter
	led.DeadLetters(ctx, store.PoisonCampaign, "", func(d store.DeadLetter) bool { poison = append(poison, d); return true })
	if len(poison) != 1 || poison[0].TaskID != "poison-1" || string(poison[0].Raw) != "not json" || poison[0].Code != "INVALID_PAYLOAD" {
		t.Errorf("poison dead letters: %+v", poison)
	}
	if v := rdb.Get(ctx, "wabulk:"+ns+":m:{wamid.old5}").Val(); v != ids[5] {
		t.Errorf("job 5's message mapping = %q, want its TaskID (its lane)", v)
	}
	if got := counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("counts after migrate\n got %+v\nwant %+v", got, want)
	}

	// A second run finds nothing and changes nothing.
	before = snapshot(t, rdb)
	if r := runCLI(t, env, "migrate"); r.code != 0 || !strings.Contains(r.stdout, "nothing to migrate") {
		t.Errorf("second migrate: %+v", r)
	}
	if after := snapshot(t, rdb); !reflect.DeepEqual(before, after) {
		t.Errorf("the second migrate changed Redis")
	}

	// The campaign enqueued again: every recipient is a duplicate.
	var csv strings.Builder
	csv.WriteString("to,from,type,media_link\n")
	for i := 1; i <= 8; i++ {
		from := testkit.Sender
		if i == 8 {
			from = testkit.Sender2
		}
		fmt.Fprintf(&csv, "+91987650%04d,%s,image,https://example.com/a.png\n", i, from)
	}
	r = enqueueCLI(t, srv.URL, "", "--campaign", campaign, "--json", writeFile(t, "old.csv", csv.String()))
	var sum map[string]any
	if json.Unmarshal([]byte(r.lastLine()), &sum) != nil || sum["duplicates"] != 8.0 || sum["enqueued"] != 0.0 {
		t.Errorf("enqueue again: %+v, want 8 duplicates", r)
	}

	// A worker sends the waiting jobs (1, 2, 3 when due, 4's retry, 8) once each, and neither
	// the sent (5, 7) nor the dead (6) again.
	sb := testkit.Sandbox(t, sandbox.Config{Balance: -1, Senders: []string{testkit.Sender, testkit.Sender2}})
	w := proctest.Start(t, append(env, "KALEYRA_SID="+testkit.SID, "KALEYRA_API_KEY="+testkit.APIKey,
		"KALEYRA_BASE_URL="+sb.URL, "WABULK_METRICS_ADDR=", "WABULK_SHUTDOWN_TIMEOUT=5s"), "worker")
	defer func() { w.Signal(t, syscall.SIGTERM); w.Wait(t, 15*time.Second) }()
	var c store.Counts
	testkit.Eventually(t, 30*time.Second, "the waiting jobs sent", func() bool {
		c = counts()
		return c.Completed == 7 && c.Pending == 0 && c.Retry == 0 && c.Active == 0
	}, func() string { return fmt.Sprintf("%+v", c) })
	st := sb.Stats()
	for i := 1; i <= 8; i++ {
		n := st.AcceptedTo[fmt.Sprintf("+91987650%04d", i)]
		if sent := i != 5 && i != 6 && i != 7; (sent && n != 1) || (!sent && n != 0) {
			t.Errorf("recipient %d accepted %d times", i, n)
		}
	}
	if c.Enqueued != 8 || c.Dead != 1 || c.Cancelled != 0 {
		t.Errorf("counts after the sends: %+v", c)
	}
}
