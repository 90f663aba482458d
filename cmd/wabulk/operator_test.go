package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// TestRedisPasswordNeverPrinted: a WABULK_REDIS_URL that does not parse (a bad port, or a
// password with a character that needed percent-encoding) makes every command that reads it
// exit 2 with an error naming the variable, and neither half of the password appears on stderr.
func TestRedisPasswordNeverPrinted(t *testing.T) {
	var urls []string
	urls = append(urls, "redis://:Zq9Xk7@127.0.0.1:notaport/0")
	for _, c := range []string{"%", "?", "/", " ", "#"} {
		urls = append(urls, fmt.Sprintf("redis://:Zq9%sXk7@127.0.0.1:6379/0", c))
	}
	commands := [][]string{
		{"enqueue", "--campaign", "c", "-"},
		{"worker"},
		{"serve", "--insecure-no-auth", "--addr", "127.0.0.1:0"},
		{"send", "--campaign", "c", "-"},
		{"status"},
		{"dead", "list"},
		{"dead", "redrive"},
		{"queue", "pause"},
		{"queue", "ls"},
		{"sender", "ls"},
	}
	var wg sync.WaitGroup
	for _, u := range urls {
		for _, args := range commands {
			wg.Go(func() {
				for _, via := range []string{"env", "flag"} {
					env := []string{"KALEYRA_SID=sid", "KALEYRA_API_KEY=key", "KALEYRA_FROM=+919800000001", "WABULK_METRICS_ADDR="}
					a := args
					if via == "env" {
						env = append(env, "WABULK_REDIS_URL="+u)
					} else {
						a = append(append([]string{}, args...), "--redis-url", u)
					}
					r := runCLIWithInput(t, env, []byte("to\n+919812345678\n"), a...)
					if r.code != 2 || !strings.Contains(r.stderr, "WABULK_REDIS_URL") ||
						strings.Contains(r.stdout+r.stderr, "Zq9") || strings.Contains(r.stdout+r.stderr, "Xk7") {
						t.Errorf("wabulk %s with %q by %s: exit %d, stderr %q: want 2 and an error naming WABULK_REDIS_URL without the password",
							strings.Join(args, " "), u, via, r.code, r.stderr)
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestAPIKeyWithDELRefusedAtStart: `wabulk worker` and `wabulk send` with a key holding DEL (or
// read from a file that does) exit 2 at once naming the variable, rather than start and
// dead-letter every job of the campaign; the key is not shown.
func TestAPIKeyWithDELRefusedAtStart(t *testing.T) {
	keyFile := writeFile(t, "key", "Zq9\x7fXk7\n")
	for _, tc := range []struct{ env, name string }{
		{"KALEYRA_API_KEY=Zq9\x7fXk7", "KALEYRA_API_KEY"},
		{"KALEYRA_API_KEY_FILE=" + keyFile, "KALEYRA_API_KEY_FILE"},
	} {
		for _, args := range [][]string{{"worker"}, {"send", "--campaign", "c", "-"}} {
			env := []string{tc.env, "KALEYRA_SID=sid", "KALEYRA_FROM=+919800000001", "WABULK_METRICS_ADDR=",
				"WABULK_REDIS_URL=redis://127.0.0.1:1/0"}
			r := runCLIWithInput(t, env, []byte("to\n+919812345678\n"), args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.name+" holds a byte not allowed") ||
				strings.Contains(r.stderr, "Zq9") || strings.Contains(r.stderr, "Xk7") {
				t.Errorf("wabulk %s with %s: exit %d, stderr %q: want 2 and an error naming %s without the key",
					args[0], tc.name, r.code, r.stderr, tc.name)
			}
		}
	}
}

// deadLetterFor enqueues goodCSV as campaign c1 (sender +919800000001) and dead-letters its
// job for +919876543210 with E110, as a worker would; it returns the env to reach that Redis.
func deadLetterFor(t *testing.T) (*redistest.Server, []string) {
	t.Helper()
	srv := redistest.Start(t)
	if r := enqueueCLI(t, srv.URL, "", "--campaign", "c1", writeFile(t, "c1.csv", goodCSV)); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}
	p, err := job.New("c1", job.Fields{To: "+919876543210", From: "+919800000001", Type: "image", MediaLink: "https://x.test/a.jpg", Ref: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	led := store.New(srv.Client(t), "whatsapp", time.Hour)
	scope, id := "whatsapp:c1:919800000001", job.TaskID(p)
	if _, _, err := led.Begin(ctx, scope, id); err != nil {
		t.Fatal(err)
	}
	if err := led.Dead(ctx, scope, store.DeadLetter{TaskID: id, Code: "E110", Status: 400, Message: "E110: low balance",
		Attempt: 1, Payload: p}); err != nil {
		t.Fatal(err)
	}
	return srv, []string{"WABULK_REDIS_URL=" + srv.URL}
}

// TestDeadListMasksTheTaskID: `dead list --json` and GET /v1/campaigns/{id}/dead mask the
// recipient in task_id as in to, unless WABULK_LOG_PII=full.
func TestDeadListMasksTheTaskID(t *testing.T) {
	srv, env := deadLetterFor(t)
	const full = "9876543210"
	var ds []ops.DeadEntry
	r := runCLI(t, env, "dead", "list", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ds) != nil || len(ds) != 1 {
		t.Fatalf("dead list --json: %+v", r)
	}
	if strings.Contains(r.stdout, full) || ds[0].TaskID != "c1:919800000001:91******3210" || ds[0].To != "+91******3210" {
		t.Errorf("dead list --json shows the number: task_id %q, to %q", ds[0].TaskID, ds[0].To)
	}
	if r := runCLI(t, append(env, "WABULK_LOG_PII=full"), "dead", "list", "--json"); !strings.Contains(r.stdout, "c1:919800000001:919876543210") {
		t.Errorf("WABULK_LOG_PII=full: %+v, want the whole task id", r)
	}

	_, addr := startServe(t, []string{"WABULK_REDIS_URL=" + srv.URL, "WABULK_API_TOKENS=" + serveToken})
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/campaigns/c1/dead", nil)
	req.Header.Set("Authorization", "Bearer "+serveToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(body), full) || !strings.Contains(string(body), "c1:919800000001:91******3210") {
		t.Errorf("GET /v1/campaigns/c1/dead: %d %s, want the task id masked", resp.StatusCode, body)
	}
}

// TestUnknownCampaignAndCodeCase: an unknown campaign is exit 2 for status, dead list and dead
// redrive alike (the HTTP API answers 404 for both of its routes); --code matches in any case.
func TestUnknownCampaignAndCodeCase(t *testing.T) {
	srv, env := deadLetterFor(t)
	for _, args := range [][]string{
		{"status", "--campaign", "nope"},
		{"dead", "list", "--campaign", "nope"},
		{"dead", "list", "--campaign", "nope", "--json"},
		{"dead", "redrive", "--campaign", "nope"},
		{"dead", "redrive", "--campaign", "nope", "--dry-run", "--json"},
	} {
		if r := runCLI(t, env, args...); r.code != 2 || !strings.Contains(r.stderr, `unknown campaign "nope"`) || r.stdout != "" {
			t.Errorf("wabulk %s: %+v, want exit 2, `unknown campaign \"nope\"` and nothing on stdout", strings.Join(args, " "), r)
		}
	}
	_, addr := startServe(t, []string{"WABULK_REDIS_URL=" + srv.URL, "WABULK_API_TOKENS=" + serveToken})
	for _, path := range []string{"/v1/campaigns/nope", "/v1/campaigns/nope/dead"} {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+serveToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}

	for _, code := range []string{"E110", "e110"} {
		var ds []ops.DeadEntry
		r := runCLI(t, env, "dead", "list", "--campaign", "c1", "--code", code, "--json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ds) != nil || len(ds) != 1 {
			t.Errorf("dead list --code %s: %+v, want the one E110", code, r)
		}
		if r := runCLI(t, env, "dead", "redrive", "--code", code, "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "matched 1") {
			t.Errorf("dead redrive --code %s --dry-run: %+v, want matched 1", code, r)
		}
	}
}

// TestQueuePauseRefusesUnknownAndRepeatsAreNoError: a typo in `queue pause|resume QUEUE` is
// exit 2 and pauses nothing; pausing or resuming twice, the namespace or one lane, is exit 0.
func TestQueuePauseRefusesUnknownAndRepeatsAreNoError(t *testing.T) {
	srv := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + srv.URL}
	if r := enqueueCLI(t, srv.URL, "", "--campaign", "c1", writeFile(t, "c1.csv", goodCSV)); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}
	paused := func() map[string]bool {
		var qs []ops.QueueCounts
		r := runCLI(t, env, "queue", "ls", "--json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &qs) != nil {
			t.Fatalf("queue ls: %+v", r)
		}
		out := map[string]bool{}
		for _, q := range qs {
			out[q.Queue] = q.Paused
		}
		return out
	}
	const lane = "whatsapp:c1:919800000001"
	for _, verb := range []string{"pause", "resume"} {
		if r := runCLI(t, env, "queue", verb, "whatsap"); r.code != 2 || !strings.Contains(r.stderr, `unknown queue "whatsap"`) || strings.Contains(r.stdout, verb) {
			t.Errorf("queue %s whatsap: %+v, want exit 2 and unknown queue", verb, r)
		}
	}
	if p := paused(); p["whatsapp"] || p[lane] {
		t.Errorf("after the typo: %v, want nothing paused", p)
	}
	for _, step := range []struct {
		args []string
		want map[string]bool
	}{
		{[]string{"pause", lane}, map[string]bool{lane: true}},
		{[]string{"pause", lane}, map[string]bool{lane: true}},
		{[]string{"resume", lane}, map[string]bool{lane: false}},
		{[]string{"resume", lane}, map[string]bool{lane: false}},
		{[]string{"pause"}, map[string]bool{"whatsapp": true, lane: true}},
		{[]string{"pause"}, map[string]bool{"whatsapp": true, lane: true}},
		{[]string{"pause", lane}, map[string]bool{lane: true}},
		{[]string{"resume"}, map[string]bool{"whatsapp": false, lane: false}},
		{[]string{"resume"}, map[string]bool{"whatsapp": false, lane: false}},
	} {
		r := runCLI(t, env, append([]string{"queue"}, step.args...)...)
		if r.code != 0 {
			t.Errorf("queue %s: %+v, want exit 0", strings.Join(step.args, " "), r)
		}
		p := paused()
		for q, want := range step.want {
			if p[q] != want {
				t.Errorf("after queue %s: %s paused %v, want %v", strings.Join(step.args, " "), q, p[q], want)
			}
		}
	}
}

// TestStatusSaysCompletedAndIsQuietWithRedisDown: the status table's column is COMPLETED, the
// word of the JSON and --help; with Redis down status prints its one message, none of
// go-redis's own "pool.go" lines.
func TestStatusSaysCompletedAndIsQuietWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	if r := enqueueCLI(t, srv.URL, "", "--campaign", "c1", writeFile(t, "c1.csv", goodCSV)); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}
	r := runCLI(t, []string{"WABULK_REDIS_URL=" + srv.URL}, "status", "--campaign", "c1")
	if r.code != 0 || !strings.Contains(r.stdout, "COMPLETED") || strings.Contains(r.stdout, "SENT") {
		t.Errorf("status table: %+v, want COMPLETED and no SENT", r)
	}
	if h := runCLI(t, nil, "status", "--help"); !strings.Contains(h.stdout, "completed") {
		t.Errorf("status --help: %+v", h)
	}
	var wg sync.WaitGroup // go-redis retries its dials for ~2 s: run the commands side by side
	for _, args := range [][]string{{"status"}, {"dead", "list"}, {"queue", "ls"}, {"sender", "ls"}} {
		wg.Go(func() {
			r := runCLI(t, []string{"WABULK_REDIS_URL=redis://127.0.0.1:1/0"}, args...)
			if r.code == 0 || strings.Contains(r.stderr, "pool.go") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("wabulk %s with Redis down: exit %d, stderr %q: want a failure and one line", strings.Join(args, " "), r.code, r.stderr)
			}
		})
	}
	wg.Wait()
}
