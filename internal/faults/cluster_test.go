package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
)

// WABULK_REDIS_CLUSTER: the real binaries (`wabulk enqueue`, `worker`, `status`, `dead list`,
// `dead redrive`) run a campaign per sender against a real 3-master Redis Cluster. Every Lua
// script must keep its keys in one slot (a lane's asynq keys and ledger share the hash tag
// {<lane>}; the lane registry lives in {<namespace>}), and the lanes spread over the masters.
func TestClusterCampaignsOnTwoSendersSpreadOverMastersAndRedrive(t *testing.T) {
	const perCampaign = 6
	start := time.Now()
	proctest.Binary(t) // built before the clock of the phases below starts
	built := time.Now()
	c := redistest.StartCluster(t, 3)
	t.Logf("binary built in %v, cluster up in %v", built.Sub(start).Round(time.Millisecond), time.Since(built).Round(time.Millisecond))
	cc := c.Client(t)
	ctx := context.Background()

	// redis-cli --cluster create gives 3 masters the slots 0–5460, 5461–10922 and 10923–16383.
	// The names are chosen with Redis's crc16 (CLUSTER KEYSLOT) so that every master holds
	// something: lane whatsapp:spring:919000000001 is slot 2055 (first master), lane
	// whatsapp:notice:919000000002 slot 15303 (third), the lane registry {whatsapp} slot 6823
	// (second). The test checks it on the running cluster below.
	senders := [2]string{testkit.Sender, "+919000000002"}
	campaigns := [2]string{"spring", "notice"}
	ledger := store.New(cc, testQueue, time.Hour)
	lanes := [2]string{ledger.LaneName(campaigns[0], senders[0]), ledger.LaneName(campaigns[1], senders[1])}
	if lanes[0] != "whatsapp:spring:919000000001" || lanes[1] != "whatsapp:notice:919000000002" {
		t.Fatalf("lanes are %v: the naming changed, choose campaign names again (see the comment)", lanes)
	}
	masters := map[string]string{}
	for _, k := range []string{"asynq:{" + lanes[0] + "}:pending", "asynq:{" + lanes[1] + "}:pending", "wabulk:{" + testQueue + "}:lanes:live"} {
		masters[k] = c.MasterOf(t, k)
	}
	if m0, m1 := masters["asynq:{"+lanes[0]+"}:pending"], masters["asynq:{"+lanes[1]+"}:pending"]; m0 == m1 {
		t.Fatalf("both lanes hash to master %s (slots %d, %d): choose other campaign names", m0,
			c.Slot(t, lanes[0]), c.Slot(t, lanes[1]))
	}

	sb, err := sandbox.Start(sandbox.Config{SID: testkit.SID, APIKey: testkit.APIKey, Senders: senders[:], Balance: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	// Kaleyra refuses one recipient of spring for good (WA400) once: a dead letter. Later sends
	// to it are accepted, so the redrive delivers it.
	deadTo := phone(40, 3)
	if err := sb.Script(deadTo, sandbox.AnswerBadPayload); err != nil {
		t.Fatal(err)
	}

	env := []string{
		"WABULK_REDIS_CLUSTER=" + c.Addrs(),
		"WABULK_QUEUE=" + testQueue,
		"KALEYRA_SID=" + testkit.SID,
		"KALEYRA_API_KEY=" + testkit.APIKey,
		"KALEYRA_BASE_URL=" + sb.URL,
		"KALEYRA_FROM=" + senders[0],
		"WABULK_METRICS_ADDR=",
		"WABULK_RATE=100000",
		"WABULK_RETRY_BASE=100ms",
		"WABULK_RETRY_MAX=400ms",
		"WABULK_HTTP_TIMEOUT=3s",
		"WABULK_SHUTDOWN_TIMEOUT=5s",
	}
	run := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := proctest.Run(t, env, nil, args...)
		if code != 0 || strings.Contains(stdout+stderr, "CROSSSLOT") {
			t.Fatalf("wabulk %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}

	dir := t.TempDir()
	wantFrom := map[string]string{} // recipient -> sender digits
	for i, camp := range campaigns {
		var b strings.Builder
		b.WriteString("to,ref\n")
		for j := range perCampaign {
			fmt.Fprintf(&b, "%s,r%d\n", phone(40+i, j), j)
			wantFrom[phone(40+i, j)] = strings.TrimPrefix(senders[i], "+")
		}
		file := filepath.Join(dir, camp+".csv")
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		var sum struct {
			Enqueued, Duplicates, Rejected int
		}
		out := run("enqueue", "--campaign", camp, "--from", senders[i], "--type", "image",
			"--media-link", "https://example.com/a.png", "--json", file)
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Enqueued != perCampaign {
			t.Fatalf("enqueue %s: %s (%v)", camp, out, err)
		}
	}

	enqueued := time.Now()
	worker := proctest.Start(t, env, "worker")
	status := func(camp string) ops.Status {
		t.Helper()
		var st ops.Status
		out := run("status", "--campaign", camp, "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Campaigns) != 1 {
			t.Fatalf("status --campaign %s --json: %s (%v)", camp, out, err)
		}
		return st
	}
	waitEnded := func(camp string, wantDead int64) store.Counts {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			cs := status(camp).Campaigns[0]
			if cs.Enqueued == perCampaign && cs.Completed+cs.Dead == cs.Enqueued && cs.Dead == wantDead &&
				cs.Active == 0 && cs.Retry == 0 && cs.Pending == 0 {
				return cs.Counts
			}
			if time.Now().After(deadline) || worker.Exited() {
				t.Fatalf("campaign %s did not end (want %d dead): %+v\nworker stderr:\n%s", camp, wantDead, cs, worker.Stderr())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	spring := waitEnded(campaigns[0], 1)
	notice := waitEnded(campaigns[1], 0)
	if spring.DeadCodes["WA400"] != 1 {
		t.Errorf("spring dead letters by code %v, want WA400: 1", spring.DeadCodes)
	}
	t.Logf("both campaigns ended %v after the worker started: spring %+v; notice %+v", time.Since(enqueued).Round(time.Millisecond), spring, notice)

	var dead []ops.DeadEntry
	if out := run("dead", "list", "--campaign", campaigns[0], "--json"); json.Unmarshal([]byte(out), &dead) != nil ||
		len(dead) != 1 || dead[0].Code != "WA400" || dead[0].TaskID != logging.NewMasker("masked").TaskID("spring:919000000001:"+strings.TrimPrefix(deadTo, "+")) {
		t.Fatalf("dead list: %s", out)
	}
	var rep ops.RedriveReport
	if out := run("dead", "redrive", "--campaign", campaigns[0], "--json"); json.Unmarshal([]byte(out), &rep) != nil ||
		rep.Matched != 1 || rep.Redriven != 1 || rep.Failed != 0 {
		t.Fatalf("dead redrive: %s", out)
	}
	redriven := time.Now()
	spring = waitEnded(campaigns[0], 0)
	t.Logf("redriven dead letter sent %v after the redrive", time.Since(redriven).Round(time.Millisecond))
	if spring.Completed != perCampaign || spring.Redriven != 1 {
		t.Errorf("spring after the redrive %+v: want %d completed, 1 redriven", spring, perCampaign)
	}
	if out := run("dead", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("dead list after the redrive: %s", out)
	}
	var all ops.Status
	if err := json.Unmarshal([]byte(run("status", "--json")), &all); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if st := all; st.Queue.Completed != 2*perCampaign || st.Queue.Pending+st.Queue.Active+st.Queue.Retry != 0 {
		t.Errorf("status queue part (namespace summed over lanes) %+v: want %d completed", st.Queue, 2*perCampaign)
	}

	// Pausing the namespace pauses every lane, on whichever master it lives; resume undoes it.
	for _, act := range []string{"pause", "resume"} {
		run("queue", act)
		var qs []ops.QueueCounts
		out := run("queue", "ls", "--json")
		if err := json.Unmarshal([]byte(out), &qs); err != nil {
			t.Fatalf("queue ls --json: %s (%v)", out, err)
		}
		seen := 0
		for _, q := range qs {
			for _, lane := range lanes {
				if q.Queue == lane {
					seen++
					if q.Paused != (act == "pause") || q.Completed != perCampaign {
						t.Errorf("after queue %s, lane %+v", act, q)
					}
				}
			}
		}
		if seen != len(lanes) {
			t.Errorf("queue ls after %s lists %d of the lanes %v: %s", act, seen, lanes, out)
		}
	}

	// Every recipient accepted exactly once, each from its campaign's sender.
	st := sb.Stats()
	if len(st.AcceptedTo) != 2*perCampaign || len(st.Duplicates()) != 0 {
		t.Errorf("sandbox accepted %v, want %d recipients once each", st.AcceptedTo, 2*perCampaign)
	}
	for _, call := range sb.Calls() {
		if call.From != wantFrom[call.To] {
			t.Errorf("%s was sent from %s, want %s", call.To, call.From, wantFrom[call.To])
		}
	}

	// The lanes' tasks and ledgers are where the slots say, and on different masters.
	laneMasters := map[string]bool{}
	for i, lane := range lanes {
		m := c.MasterOf(t, "asynq:{"+lane+"}:completed")
		laneMasters[m] = true
		node := c.Node(t, m)
		keys, err := node.Keys(ctx, "*{"+lane+"}*").Result()
		if err != nil {
			t.Fatal(err)
		}
		var tasks, ledgerKeys int
		for _, k := range keys {
			switch {
			case strings.HasPrefix(k, "asynq:{"+lane+"}:t:"):
				tasks++
			case strings.HasPrefix(k, "wabulk:{"+lane+"}:"):
				ledgerKeys++
			}
		}
		if tasks != perCampaign || ledgerKeys == 0 {
			t.Errorf("lane %s on master %s holds %d task keys and %d ledger keys, want %d and some: %v", lane, m, tasks, ledgerKeys, perCampaign, keys)
		}
		t.Logf("lane %s (campaign %s): slot %d on master %s, %d keys there", lane, campaigns[i], c.Slot(t, lane), m, len(keys))
	}
	if len(laneMasters) != len(lanes) {
		t.Errorf("the lanes share masters %v", laneMasters)
	}
	t.Logf("lane registry {%s}: slot %d on master %s", testQueue, c.Slot(t, testQueue), masters["wabulk:{"+testQueue+"}:lanes:live"])

	worker.Signal(t, syscall.SIGTERM)
	if code := worker.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("worker exited %d on SIGTERM", code)
	}
	for _, line := range strings.Split(worker.Stderr(), "\n") {
		if strings.Contains(line, "CROSSSLOT") || strings.Contains(line, `"level":"error"`) {
			t.Errorf("worker logged: %s", line)
		}
	}

	// Lane upkeep on the cluster, as a worker's maintenance does it, with the retention over:
	// retire the drained lanes, then remove them (asynq's completed tasks and queue, the ledger,
	// the registry entries).
	live, err := ledger.LiveLanes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.RetireDrained(ctx, live); err != nil {
		t.Fatalf("retire drained lanes: %v", err)
	}
	time.Sleep(1100 * time.Millisecond) // lanes:done is scored in whole seconds
	insp := asynq.NewInspectorFromRedisClient(cc)
	if n, err := store.New(cc, testQueue, time.Nanosecond).CleanUp(ctx, insp, 100); err != nil || n != len(lanes) {
		t.Fatalf("clean up: removed %d lanes (%v), want %d", n, err, len(lanes))
	}
	for _, lane := range lanes {
		m := c.MasterOf(t, lane)
		keys, err := c.Node(t, m).Keys(ctx, "*{"+lane+"}:t:*").Result()
		if err != nil || len(keys) != 0 {
			t.Errorf("lane %s still holds tasks on %s after the clean-up: %v (%v)", lane, m, keys, err)
		}
	}
	if out := run("queue", "ls", "--json"); strings.Contains(out, lanes[0]) || strings.Contains(out, lanes[1]) {
		t.Errorf("queue ls after the clean-up still lists a lane: %s", out)
	}
}
