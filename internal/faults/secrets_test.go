package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

// After a run through every answer the sandbox can give (each twice, so transient ones exhaust
// their one retry and are dead-lettered too) plus poison tasks, the API key is nowhere: not in
// the worker's output at debug level, not in any Redis value (payloads, results, last errors,
// dead-letter records, the ledger), not in /metrics; and phone numbers are masked in the logs.
func TestAPIKeyNeverLeaksAndNumbersAreMasked(t *testing.T) {
	w := newWorld(t, sandbox.Config{HangFor: 5 * time.Second}, redistestOptions())
	n := len(sandbox.Answers)
	ids := w.enqueue("leak", 7, n, 1)
	for i, a := range sandbox.Answers {
		w.Sandbox.Script(phone(7, i), a, a)
	}
	// Two poison tasks, put by asynq.Client in a lane of their own.
	client := asynq.NewClient(w.Redis.ConnOpt(t))
	defer client.Close()
	for i, body := range []string{`not json ` + testkit.APIKey[:6], `{"v":99}`} {
		client.Enqueue(asynq.NewTask(job.TaskType, []byte(body)), asynq.Queue(w.ledger.LaneName("poisoned", "")), asynq.TaskID(fmt.Sprintf("poison-%d", i)))
	}
	if err := w.ledger.RegisterLane(context.Background(), store.Lane{Campaign: "poisoned"}, false); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	p := startWorker(t, w.env("WABULK_LOG_LEVEL=debug", "WABULK_METRICS_ADDR="+addr, "WABULK_HTTP_TIMEOUT=500ms", "WABULK_CONCURRENCY=20"))
	// The campaign's dead jobs are archived in its lane, the two poison tasks in theirs.
	w.waitFor("every job to end", 60*time.Second, func() bool {
		c := w.counts("leak")
		qi, err := w.queueInfo("leak")
		pi, perr := w.queueInfo("poisoned")
		return c.Completed+c.Dead == int64(n) && err == nil && qi.Archived == int(c.Dead) && perr == nil && pi.Archived == 2
	})
	w.checkEveryJobEnded("leak", ids)
	code, metrics := get("http://" + addr + "/metrics")
	if code != 200 || !strings.Contains(metrics, "wabulk_sends_total") {
		t.Fatalf("/metrics: %d", code)
	}
	stopWorker(t, w, p, 10*time.Second)

	places := map[string]string{"worker stdout": p.Stdout(), "worker stderr": p.Stderr(), "/metrics": metrics}
	// Every value in Redis: asynq's task hashes (payload, result, last error), the archive,
	// the ledger's markers and dead-letter records.
	ctx := context.Background()
	var all strings.Builder
	keys, _ := w.RDB.Keys(ctx, "*").Result()
	for _, k := range keys {
		switch w.RDB.Type(ctx, k).Val() {
		case "string":
			all.WriteString(w.RDB.Get(ctx, k).Val())
		case "hash":
			for f, v := range w.RDB.HGetAll(ctx, k).Val() {
				all.WriteString(f + "=" + v + "\n")
			}
		case "list":
			all.WriteString(strings.Join(w.RDB.LRange(ctx, k, 0, -1).Val(), "\n"))
		case "set":
			all.WriteString(strings.Join(w.RDB.SMembers(ctx, k).Val(), "\n"))
		case "zset":
			all.WriteString(strings.Join(w.RDB.ZRange(ctx, k, 0, -1).Val(), "\n"))
		}
		all.WriteString(k + "\n")
	}
	places["redis"] = all.String()
	var tasks strings.Builder
	queues, err := w.queues("leak")
	if err != nil {
		t.Fatal(err)
	}
	poisoned, err := w.queues("poisoned")
	if err != nil {
		t.Fatal(err)
	}
	queues = append(queues, poisoned...)
	for _, q := range queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){w.Insp.ListCompletedTasks, w.Insp.ListArchivedTasks} {
			infos, _ := list(q, asynq.PageSize(1000))
			for _, ti := range infos {
				fmt.Fprintf(&tasks, "%s %s %s\n", ti.Payload, ti.Result, ti.LastErr)
			}
		}
	}
	places["task payloads, results, last errors"] = tasks.String()
	var dead strings.Builder
	for _, c := range []string{"leak", "poisoned"} {
		w.ledger.DeadLetters(ctx, c, "", func(d store.DeadLetter) bool {
			b, _ := json.Marshal(d)
			dead.Write(b)
			return true
		})
	}
	places["dead-letter records"] = dead.String()
	if !strings.Contains(tasks.String(), "RBC001") || !strings.Contains(dead.String(), "WA400") {
		t.Fatal("the run did not go through the error paths")
	}
	for where, text := range places {
		if strings.Contains(text, testkit.APIKey) {
			t.Errorf("the API key appears in %s", where)
		}
	}
	// The numbers: masked in every log line (task ids included), as given everywhere else.
	stderr := p.Stderr()
	for i := range n {
		if to := phone(7, i); strings.Contains(stderr, to[3:]) {
			t.Errorf("%s appears unmasked in the worker's log", to)
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, to[3:]) {
					t.Log(l)
					break
				}
			}
		}
	}
	if got := logsSay(p, `"to":"+91******`); got < n {
		t.Errorf("%d log lines with a masked number, want at least %d", got, n)
	}

	t.Run("WABULK_LOG_PII=full shows the numbers", func(t *testing.T) {
		w.enqueue("pii", 8, 1, 1)
		p := startWorker(t, w.env("WABULK_LOG_PII=full"))
		w.waitFor("the send", 15*time.Second, w.finished("pii", 1))
		p.Signal(t, syscall.SIGTERM)
		p.Wait(t, 10*time.Second)
		if !strings.Contains(p.Stderr(), `"to":"`+phone(8, 0)+`"`) {
			t.Errorf("full number not in the log with WABULK_LOG_PII=full:\n%s", p.Stderr())
		}
	})

	t.Run("a wrong API key is not printed either", func(t *testing.T) {
		const wrong = "Wr0ng-K3y-never-print-me"
		w.enqueue("wrongkey", 9, 1, 1)
		p := startWorker(t, w.env("KALEYRA_API_KEY="+wrong, "WABULK_LOG_LEVEL=debug"))
		w.waitFor("the dead letter", 15*time.Second, w.finished("wrongkey", 1))
		p.Signal(t, syscall.SIGTERM)
		p.Wait(t, 10*time.Second)
		var recs strings.Builder
		w.ledger.DeadLetters(ctx, "wrongkey", "", func(d store.DeadLetter) bool { b, _ := json.Marshal(d); recs.Write(b); return true })
		if !strings.Contains(recs.String(), "RBC001") {
			t.Fatalf("want an RBC001 dead letter, got %s", recs.String())
		}
		for where, text := range map[string]string{"stdout": p.Stdout(), "stderr": p.Stderr(), "dead letters": recs.String()} {
			if strings.Contains(text, wrong) {
				t.Errorf("the wrong key appears in %s", where)
			}
		}
	})
}
