package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
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
	// queue ls lists the namespace first, its counts summed over the single queue of earlier
	// versions and every lane, then each queue on its own: here the one lane of c1. The pause
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
