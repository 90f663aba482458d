package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

const (
	testQueue = "whatsapp"
)

// bundle is one test's world: a real redis-server, the sandbox, and a way to run workers.
type bundle struct {
	*testkit.World
	t      *testing.T
	client *asynq.Client
	ledger *store.Ledger
	logs   *proctest.SyncBuffer
	maxTry int
}

func setup(t *testing.T) *bundle {
	t.Helper()
	w := testkit.NewWorld(t, redistest.Options{}, sandbox.Config{Senders: []string{testkit.Sender}, Balance: -1})
	b := &bundle{World: w, t: t, logs: &proctest.SyncBuffer{}, maxTry: 3}
	b.client = asynq.NewClient(w.Redis.ConnOpt(t))
	t.Cleanup(func() { b.client.Close() })
	b.ledger = store.New(b.RDB, testQueue, time.Hour)
	return b
}

func (b *bundle) config() Config {
	return Config{
		Redis:           b.Redis.ConnOpt(b.t),
		Queue:           testQueue,
		Concurrency:     8,
		Rate:            1000,
		RetryBase:       50 * time.Millisecond,
		RetryMax:        200 * time.Millisecond,
		ShutdownTimeout: 3 * time.Second,
		From:            testkit.Sender,
		LaneInterval:    100 * time.Millisecond,
		Kaleyra:         KaleyraConfig{SID: testkit.SID, APIKey: testkit.APIKey, BaseURL: b.Sandbox.URL, Timeout: 500 * time.Millisecond},
	}
}

// run starts a worker (Run, the real thing) and stops it when the test ends.
func (b *bundle) run(cfg Config) (stop func()) {
	b.t.Helper()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(b.logs), zap.DebugLevel))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				b.t.Errorf("worker.Run: %v", err)
			}
		})
	}
	b.t.Cleanup(stop)
	return stop
}

// enqueue puts one job of campaign for to in the campaign's lane of the worker's default sender
// and returns its TaskID.
func (b *bundle) enqueue(campaign, to string, maxRetry int) string {
	b.t.Helper()
	p, err := job.New(campaign, job.Fields{To: to, Type: "image", MediaLink: "https://example.com/a.png", Ref: "customer-" + to[len(to)-4:], Ref1: "marketing", Ref2: "nov"})
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := job.Encode(p)
	id := job.TaskID(p)
	b.enqueueTasks(campaign, job.TaskType, maxRetry, store.Task{ID: id, Payload: body})
	return id
}

// enqueueTasks writes tasks of type typ into the lane of campaign's jobs that name no sender,
// counted as the producer counts them, registers the lane and returns its name.
func (b *bundle) enqueueTasks(campaign, typ string, maxRetry int, tasks ...store.Task) string {
	b.t.Helper()
	ctx := context.Background()
	lane := b.ledger.LaneName(campaign, "")
	q := b.ledger.Enqueuer(typ, maxRetry)
	for len(tasks) > 0 {
		n := min(len(tasks), 1000)
		if _, _, err := q.Enqueue(ctx, lane, tasks[:n], true); err != nil {
			b.t.Fatal(err)
		}
		tasks = tasks[n:]
	}
	if err := b.ledger.RegisterLane(ctx, store.Lane{Campaign: campaign}, false); err != nil {
		b.t.Fatal(err)
	}
	return lane
}

// waitFor polls cond until it holds or the deadline passes.
func (b *bundle) waitFor(what string, d time.Duration, cond func() bool) {
	b.t.Helper()
	testkit.Eventually(b.t, d, what, cond, func() string {
		qs, err := b.Insp.Queues()
		var out []string
		for _, q := range qs {
			qi, err := b.Insp.GetQueueInfo(q)
			out = append(out, fmt.Sprintf("%s: %+v (%v)", q, qi, err))
		}
		return fmt.Sprintf("the lanes (%v):\n%s", err, strings.Join(out, "\n"))
	})
}

func (b *bundle) counts(campaign string) store.Counts {
	c, err := b.ledger.Counts(context.Background(), campaign)
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

func (b *bundle) done(campaign string, n int64) func() bool {
	return func() bool { c := b.counts(campaign); return c.Completed+c.Dead == n }
}

// taskInfo is the task id in the lane its TaskID names.
func (b *bundle) taskInfo(id string) *asynq.TaskInfo {
	b.t.Helper()
	lane, ok := b.ledger.LaneOfTask(id)
	if !ok {
		b.t.Fatalf("TaskID %s names no lane", id)
	}
	ti, err := b.Insp.GetTaskInfo(lane, id)
	if err != nil {
		b.t.Fatalf("GetTaskInfo(%s): %v", id, err)
	}
	return ti
}

// logLines returns the captured "send" log lines as maps.
func (b *bundle) logLines() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "send" {
			out = append(out, m)
		}
	}
	return out
}

func TestWA500TwiceThenSuccessIsSentOnceOnAttemptThree(t *testing.T) {
	b := setup(t)
	b.Sandbox.Script("+919812345601", "WA500", "WA500", "ok")
	id := b.enqueue("c1", "+919812345601", 5)
	b.run(b.config())
	b.waitFor("the job to complete", 10*time.Second, b.done("c1", 1))
	b.waitFor("the completed task", 5*time.Second, func() bool { return b.taskInfo(id).State == asynq.TaskStateCompleted })

	ti := b.taskInfo(id)
	if ti.State != asynq.TaskStateCompleted {
		t.Fatalf("state = %v, want completed", ti.State)
	}
	if !bytes.Contains(ti.Result, []byte("wamid.")) {
		t.Errorf("result = %q, want Kaleyra's answer with the message id", ti.Result)
	}
	if got := b.Sandbox.Stats().AcceptedTo["+919812345601"]; got != 1 {
		t.Errorf("accepted %d times, want 1", got)
	}
	c := b.counts("c1")
	if c.Completed != 1 || c.Retries != 2 || c.Dead != 0 {
		t.Errorf("counts = %+v, want completed 1, retries 2", c)
	}
	// The schedule the backoff allows: retry n waits at most min(max, base·2ⁿ) (full jitter),
	// plus asynq's own granularity: retry times are stored in whole seconds and moved back to
	// the lane by the upkeep every LaneInterval (100 ms here).
	calls := b.Sandbox.Calls()
	if len(calls) != 3 {
		t.Fatalf("calls = %d, want 3", len(calls))
	}
	cfg := b.config()
	for n := range 2 {
		gap := calls[n+1].Time.Sub(calls[n].Time)
		ceil := min(cfg.RetryMax, cfg.RetryBase<<n)
		if limit := ceil + time.Second + 100*time.Millisecond + 300*time.Millisecond; gap > limit {
			t.Errorf("retry %d came %v after the failure, more than the backoff allows (%v + asynq's granularity = %v)", n+1, gap, ceil, limit)
		}
	}
	var outcomes []string
	for _, l := range b.logLines() {
		outcomes = append(outcomes, fmt.Sprintf("%v@%v", l["outcome"], l["attempt"]))
	}
	if want := "retry@1 retry@2 sent@3"; strings.Join(outcomes, " ") != want {
		t.Errorf("log outcomes = %v, want %s", outcomes, want)
	}
}

func TestPermanentAnswersAreDeadLetteredAfterOneCall(t *testing.T) {
	for _, tc := range []struct{ answer, code string }{
		{"E110", "E110"}, {"WA400", "WA400"}, {"RBC001", "RBC001"}, {"WA401", "WA401"},
		{"WA-401-account", "WA-401"}, {"WAV2101", "WAV2101"},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			b := setup(t)
			to := "+919812345602"
			b.Sandbox.Script(to, tc.answer)
			id := b.enqueue("c2", to, 5)
			b.run(b.config())
			b.waitFor("the dead letter", 10*time.Second, b.done("c2", 1))
			b.waitFor("the archived task", 5*time.Second, func() bool { return b.taskInfo(id).State == asynq.TaskStateArchived })
			ti := b.taskInfo(id)
			if ti.State != asynq.TaskStateArchived {
				t.Fatalf("state = %v, want archived", ti.State)
			}
			if !strings.HasPrefix(ti.LastErr, tc.code+":") {
				t.Errorf("last error %q does not start with %s", ti.LastErr, tc.code)
			}
			if got := b.Sandbox.Stats().Received; got != 1 {
				t.Errorf("sandbox received %d calls, want exactly 1", got)
			}
			var dl []store.DeadLetter
			b.ledger.DeadLetters(context.Background(), "c2", "", func(d store.DeadLetter) bool { dl = append(dl, d); return true })
			if len(dl) != 1 || dl[0].Code != tc.code || dl[0].Payload.To != to || dl[0].Payload.Ref != "customer-"+to[len(to)-4:] {
				t.Errorf("dead-letter record = %+v", dl)
			}
		})
	}
}

func TestTransientAnswersAreRetriedAndExhaustionDeadLetters(t *testing.T) {
	for _, answer := range []string{"html502", "hang", "reset", "truncated", "empty500", "429", "503"} {
		t.Run(answer+" is retried", func(t *testing.T) {
			b := setup(t)
			to := "+919812345603"
			b.Sandbox.Script(to, answer, "ok")
			b.enqueue("c3", to, 3)
			b.run(b.config())
			b.waitFor("the send", 15*time.Second, b.done("c3", 1))
			if c := b.counts("c3"); c.Completed != 1 || c.Retries != 1 {
				t.Errorf("counts = %+v, want completed 1 after 1 retry", c)
			}
		})
	}
	t.Run("retries exhausted is archived", func(t *testing.T) {
		b := setup(t)
		to := "+919812345604"
		b.Sandbox.Script(to, "WA500", "WA500", "WA500", "WA500", "ok")
		id := b.enqueue("c4", to, 2)
		b.run(b.config())
		b.waitFor("the dead letter", 10*time.Second, b.done("c4", 1))
		b.waitFor("the archived task", 5*time.Second, func() bool { return b.taskInfo(id).State == asynq.TaskStateArchived })
		ti := b.taskInfo(id)
		if ti.State != asynq.TaskStateArchived || !strings.HasPrefix(ti.LastErr, "WA500:") {
			t.Fatalf("state %v, last error %q; want archived with WA500", ti.State, ti.LastErr)
		}
		if got := b.Sandbox.Stats().Received; got != 3 {
			t.Errorf("calls = %d, want 3 (first try + 2 retries)", got)
		}
	})
}

func TestPoisonPayloadIsDeadLetteredOnce(t *testing.T) {
	b := setup(t)
	var tasks []store.Task
	for i, body := range []string{`{"v":99,"campaign":"x"}`, `not json`, `{"v":1,"campaign":"p","to":"+919812345605","type":"image","media_link":"ftp://x","wa_source":"api"}`} {
		tasks = append(tasks, store.Task{ID: fmt.Sprintf("poison-%d", i), Payload: []byte(body)})
	}
	lane := b.enqueueTasks("p", job.TaskType, 5, tasks...)
	b.run(b.config())
	b.waitFor("3 archived", 10*time.Second, func() bool {
		qi, err := b.Insp.GetQueueInfo(lane)
		return err == nil && qi.Archived == 3
	})
	if got := b.Sandbox.Stats().Received; got != 0 {
		t.Errorf("sandbox received %d calls for poison payloads", got)
	}
	ti, err := b.Insp.GetTaskInfo(lane, "poison-1")
	if err != nil {
		t.Fatal(err)
	}
	if ti.Retried != 0 || !strings.HasPrefix(ti.LastErr, CodeBadPayload) {
		t.Errorf("poison task retried %d, last error %q", ti.Retried, ti.LastErr)
	}
}

func TestLogsCarryRefsAndMaskedNumberButNeverTheKey(t *testing.T) {
	b := setup(t)
	to := "+919812345606"
	b.Sandbox.Script(to, "WA500", "ok")
	b.enqueue("c6", to, 3)
	b.run(b.config())
	b.waitFor("the send", 10*time.Second, b.done("c6", 1))
	// The attempt's log line is written after its ledger record: wait for it too.
	b.waitFor("both attempts' log lines", 5*time.Second, func() bool { return len(b.logLines()) >= 2 })
	all := b.logs.String()
	if strings.Contains(all, testkit.APIKey) {
		t.Fatal("the API key appears in the logs")
	}
	if strings.Contains(all, to[1:]) {
		t.Error("the full phone number appears in the logs (masked by default, task ids included)")
	}
	lines := b.logLines()
	if len(lines) != 2 {
		t.Fatalf("got %d send lines, want 2", len(lines))
	}
	for _, l := range lines {
		for _, k := range []string{"task_id", "campaign", "from", "to", "type", "ref", "ref1", "ref2", "wa_source", "attempt", "outcome", "code", "status", "duration"} {
			if _, ok := l[k]; !ok {
				t.Errorf("log line lacks %q: %v", k, l)
			}
		}
		if l["ref"] != "customer-"+to[len(to)-4:] || l["ref1"] != "marketing" || l["to"] != "+91******5606" {
			t.Errorf("log line fields: %v", l)
		}
	}
}

func TestMoreThanTenThousandDeadLettersAreAllInTheRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	b := setup(t)
	b.Sandbox.SetBalance(0) // every send answers E110
	const n = 10_050
	ctx := context.Background()
	var tasks []store.Task
	for i := range n {
		p, _ := job.New("big", job.Fields{To: fmt.Sprintf("+91981%07d", i), Type: "image", MediaID: "123"})
		body, _ := job.Encode(p)
		tasks = append(tasks, store.Task{ID: job.TaskID(p), Payload: body})
	}
	lane := b.enqueueTasks("big", job.TaskType, 25, tasks...)
	cfg := b.config()
	cfg.Concurrency = 100
	cfg.Rate = 100000
	b.run(cfg)
	b.waitFor("every job dead", 120*time.Second, b.done("big", n))
	seen := 0
	b.ledger.DeadLetters(ctx, "big", "E110", func(store.DeadLetter) bool { seen++; return true })
	if seen != n {
		t.Errorf("dead-letter record holds %d, want %d", seen, n)
	}
	if c := b.counts("big"); c.DeadCodes["E110"] != n {
		t.Errorf("dead by code = %v", c.DeadCodes)
	}
	qi, _ := b.Insp.GetQueueInfo(lane)
	t.Logf("asynq archive holds %d of %d (it trims at 10,000)", qi.Archived, n)
}

func TestTwoWorkersShareTheRate(t *testing.T) {
	b := setup(t)
	const rate, jobs = 50, 200
	for i := range jobs {
		b.enqueue("rate", fmt.Sprintf("+91982%07d", i), 3)
	}
	cfg := b.config()
	cfg.Rate, cfg.Burst, cfg.Concurrency = rate, 5, 20
	b.run(cfg)
	b.run(cfg)
	b.waitFor("all sent", 30*time.Second, b.done("rate", jobs))
	calls := b.Sandbox.Calls()
	if len(calls) != jobs {
		t.Fatalf("calls = %d, want %d", len(calls), jobs)
	}
	// Any one-second window holds at most rate + burst sends.
	maxIn := 0
	for i := range calls {
		j := i
		for j < len(calls) && calls[j].Time.Sub(calls[i].Time) < time.Second {
			j++
		}
		maxIn = max(maxIn, j-i)
	}
	// +2: calls are timed where the sandbox sees them, which may lag the limiter's slot.
	if maxIn > rate+5+2 {
		t.Errorf("max sends in a 1 s window = %d, want ≤ %d (+2 slack)", maxIn, rate+5)
	}
	span := calls[len(calls)-1].Time.Sub(calls[0].Time).Seconds()
	if got := float64(jobs-cfg.Burst) / span; got > rate*1.03 {
		t.Errorf("achieved %.1f/s over %.2fs, want ≤ %d/s", got, span, rate)
	}
}

func TestPauseOnAccountCodePausesQueueWithoutDeadLetters(t *testing.T) {
	b := setup(t)
	b.Sandbox.SetBalance(0)
	for i := range 5 {
		b.enqueue("pause", fmt.Sprintf("+91983%07d", i), 3)
	}
	cfg := b.config()
	cfg.PauseOn = []string{"E110"}
	b.run(cfg)
	// Paused, and no call in flight: an E110 answer still on its way would pause the queue
	// again after the resume below, as it should (the balance was low when it was sent).
	lane := b.ledger.LaneName("pause", "")
	b.waitFor("the lane and the namespace to pause with no job active", 10*time.Second, func() bool {
		qi, err := b.Insp.GetQueueInfo(lane)
		paused, _ := b.ledger.NamespacePaused(context.Background())
		return err == nil && qi.Paused && qi.Active == 0 && paused
	})
	if c := b.counts("pause"); c.Dead != 0 {
		t.Errorf("dead = %d, want 0 while paused", c.Dead)
	}
	b.Sandbox.SetBalance(-1)
	// As `wabulk queue resume` does: the namespace, the lane, and word to the workers.
	for _, q := range []string{testQueue, lane} {
		if err := b.Insp.UnpauseQueue(q); err != nil {
			t.Fatal(err)
		}
	}
	b.ledger.Wake(context.Background(), lane)
	b.waitFor("all sent after resume", 15*time.Second, b.done("pause", 5))
	if c := b.counts("pause"); c.Completed != 5 {
		t.Errorf("counts after resume = %+v", c)
	}
}

func TestRedisUnreachableAtStartIsAClearError(t *testing.T) {
	cfg := Config{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Kaleyra: KaleyraConfig{SID: testkit.SID, APIKey: testkit.APIKey, BaseURL: "http://127.0.0.1:1"}}
	err := Run(context.Background(), cfg, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "Redis is unreachable") {
		t.Fatalf("err = %v", err)
	}
}

var _ = ratelimit.Config{}

func TestTasksArchivedOutsideTheHandlerGetADeadLetterRecord(t *testing.T) {
	b := setup(t)
	id := b.enqueue("arch", "+919812345607", 3)
	// A task archived by an operator in asynqmon never reaches the handler.
	if err := b.Insp.ArchiveTask(b.ledger.LaneName("arch", ""), id); err != nil {
		t.Fatal(err)
	}
	cfg := b.config()
	cfg.ReconcileInterval = 50 * time.Millisecond
	b.run(cfg)
	b.waitFor("the reconciled dead letter", 10*time.Second, b.done("arch", 1))
	var got []store.DeadLetter
	b.ledger.DeadLetters(context.Background(), "arch", "", func(d store.DeadLetter) bool { got = append(got, d); return true })
	if len(got) != 1 || got[0].Code != CodeArchived || got[0].Payload.To != "+919812345607" {
		t.Fatalf("dead letters = %+v, want one ARCHIVED record with the payload", got)
	}
	if got := b.Sandbox.Stats().Received; got != 0 {
		t.Errorf("sandbox received %d calls for an archived task", got)
	}
}

func TestPauseOnLastAttemptDeadLettersInsteadOfLosingTrack(t *testing.T) {
	b := setup(t)
	b.Sandbox.SetBalance(0)
	id := b.enqueue("pauselast", "+919830000001", 0) // no retries: the first attempt is the last
	cfg := b.config()
	cfg.PauseOn = []string{"E110"}
	b.run(cfg)
	b.waitFor("the dead letter", 10*time.Second, b.done("pauselast", 1))
	b.waitFor("the archived task", 5*time.Second, func() bool { return b.taskInfo(id).State == asynq.TaskStateArchived })
	if c := b.counts("pauselast"); c.Dead != 1 || c.DeadCodes["E110"] != 1 || c.Active != 0 {
		t.Errorf("counts = %+v, want one E110 dead letter and nothing active", c)
	}
	qi, err := b.Insp.GetQueueInfo(b.ledger.LaneName("pauselast", ""))
	if err != nil || !qi.Paused {
		t.Errorf("lane paused = %v (%v), want paused for the rest of the campaign", qi != nil && qi.Paused, err)
	}
}
