package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
)

// runCLI runs the real `wabulk args…` with exactly env (no WABULK_ or KALEYRA_ variables of
// this process leak in).
func runCLI(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	return runCLIWithInput(t, env, nil, args...)
}

func runCLIWithInput(t *testing.T, env []string, stdin []byte, args ...string) cliResult {
	t.Helper()
	stdout, stderr, code := proctest.Run(t, env, stdin, args...)
	return cliResult{stdout: stdout, stderr: stderr, code: code}
}

func TestOperatorCLIStatusQueueDead(t *testing.T) {
	srv := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + srv.URL}
	if r := enqueueCLI(t, srv.URL, "", "--campaign", "c1", writeFile(t, "c1.csv", goodCSV)); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}

	r := runCLI(t, env, "status", "--json")
	var st ops.Status
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("status --json: %+v", r)
	}
	if len(st.Campaigns) != 1 || st.Campaigns[0].Enqueued != 3 || st.Campaigns[0].Pending != 3 || st.Queue.Pending != 3 {
		t.Errorf("status: %+v", st)
	}
	if r := runCLI(t, env, "status", "--campaign", "c1"); r.code != 0 || !strings.Contains(r.stdout, "c1 ") || !strings.Contains(r.stdout, "CAMPAIGN") {
		t.Errorf("status table: %+v", r)
	}
	if r := runCLI(t, env, "status", "--campaign", "nope"); r.code == 0 || !strings.Contains(r.stderr, "unknown campaign") {
		t.Errorf("status of an unknown campaign: %+v", r)
	}

	if r := runCLI(t, env, "queue", "pause"); r.code != 0 || !strings.Contains(r.stdout, "whatsapp: paused") {
		t.Errorf("queue pause: %+v", r)
	}
	// queue ls lists the namespace first, its counts summed over every lane, then each queue on its own: here the one lane of c1. The pause
	// of the namespace pauses them all.
	var qs []ops.QueueCounts
	if r := runCLI(t, env, "queue", "ls", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &qs) != nil {
		t.Errorf("queue ls after pause: %+v", r)
	} else {
		const lane = "whatsapp:c1:919800000001"
		if len(qs) != 2 || qs[0].Queue != "whatsapp" || qs[0].Pending != 3 || qs[1].Queue != lane || qs[1].Pending != 3 {
			t.Errorf("queue ls after pause: %+v, want whatsapp (3 pending in all) then %s (3 pending)", qs, lane)
		}
		for _, q := range qs {
			if !q.Paused {
				t.Errorf("queue ls after pause: %s not paused", q.Queue)
			}
		}
	}
	if r := runCLI(t, env, "queue", "resume"); r.code != 0 || !strings.Contains(r.stdout, "whatsapp: resumed") {
		t.Errorf("queue resume: %+v", r)
	}
	if r := runCLI(t, env, "queue", "ls"); r.code != 0 || !strings.Contains(r.stdout, "running") {
		t.Errorf("queue ls after resume: %+v", r)
	}

	if r := runCLI(t, env, "dead", "list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("dead list: %+v", r)
	}
	if r := runCLI(t, env, "dead", "redrive", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "matched 0, would redrive 0") {
		t.Errorf("dead redrive --dry-run: %+v", r)
	}
	if r := runCLI(t, []string{"WABULK_REDIS_URL=redis://127.0.0.1:1/0"}, "status"); r.code != 2 {
		t.Errorf("status with Redis down: exit %d, want 2 (%s)", r.code, r.stderr)
	}
}

// TestViewsListFinishedCampaignsOnRequest: status, campaign ls and queue ls show every campaign
// not finished and the most recently finished up to --limit, say how many they leave out, and
// list every one with --all.
func TestViewsListFinishedCampaignsOnRequest(t *testing.T) {
	srv := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + srv.URL}
	for _, c := range []string{"old", "new", "running"} {
		if r := enqueueCLI(t, srv.URL, "", "--campaign", c, writeFile(t, c+".csv", goodCSV)); r.code != 0 {
			t.Fatalf("enqueue %s: %+v", c, r)
		}
	}
	// old and new are sent and their lanes retired, as workers do; new finished last.
	ctx := context.Background()
	rdb := srv.Client(t)
	l := store.New(rdb, "whatsapp", time.Hour)
	for i, c := range []string{"old", "new"} {
		lane := l.LaneName(c, "+919800000001")
		ids, err := rdb.LRange(ctx, store.PendingKey(lane), 0, -1).Result()
		if err != nil || len(ids) != 3 {
			t.Fatalf("pending of %s: %v %v", lane, ids, err)
		}
		for _, id := range ids {
			if err := l.Sent(ctx, lane, id, []byte(`{"id":"1"}`)); err != nil {
				t.Fatal(err)
			}
			rdb.LRem(ctx, store.PendingKey(lane), 0, id)
		}
		if _, err := l.RetireDrained(ctx, []store.Lane{{Name: lane, Campaign: c}}); err != nil {
			t.Fatal(err)
		}
		rdb.ZAdd(ctx, "wabulk:{whatsapp}:campaigns:finished", redis.Z{Score: float64(i + 1), Member: c})
	}

	r := runCLI(t, env, "campaign", "ls", "--limit", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "running ") || !strings.Contains(r.stdout, "new ") || strings.Contains(r.stdout, "old ") ||
		!strings.Contains(r.stdout, "(1 more finished campaign not listed: --all") {
		t.Errorf("campaign ls --limit 1: %+v; want running and new listed, old left out and said so", r)
	}
	for _, args := range [][]string{{"campaign", "ls"}, {"campaign", "ls", "--all"}, {"campaign", "ls", "--limit", "0"}} {
		if r := runCLI(t, env, args...); r.code != 0 || !strings.Contains(r.stdout, "old ") || strings.Contains(r.stdout, "more finished") {
			t.Errorf("%v: %+v; want every campaign listed", args, r)
		}
	}
	if r := runCLI(t, env, "campaign", "ls", "--limit", "-1"); r.code != 2 {
		t.Errorf("campaign ls --limit -1: %+v; want exit 2", r)
	}

	var st ops.Status
	if r := runCLI(t, env, "status", "--limit", "1", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("status --limit 1 --json: %+v", r)
	}
	if len(st.Campaigns) != 2 || st.Campaigns[0].Campaign != "new" || st.Campaigns[1].Campaign != "running" ||
		st.FinishedCampaigns != 2 || st.Queue.Pending != 3 || st.Queue.Completed != 0 {
		t.Errorf("status --limit 1: %+v; want new and running of 2 finished, the queue's 3 pending", st)
	}
	if r := runCLI(t, env, "status", "--limit", "1"); r.code != 0 || !strings.Contains(r.stdout, "(1 more finished campaign not listed") {
		t.Errorf("status --limit 1: %+v", r)
	}

	var qs []ops.QueueCounts
	if r := runCLI(t, env, "queue", "ls", "--limit", "0", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &qs) != nil || len(qs) != 4 {
		t.Errorf("queue ls --limit 0: %+v; want the namespace and 3 lanes", r)
	}
	r = runCLI(t, env, "queue", "ls", "--limit", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "whatsapp:running:") || !strings.Contains(r.stdout, "whatsapp:new:") ||
		strings.Contains(r.stdout, "whatsapp:old:") || !strings.Contains(r.stdout, "(1 more queue on this Redis not listed: --all") {
		t.Errorf("queue ls --limit 1: %+v; want the lanes of running and new, and old's counted", r)
	}
}
