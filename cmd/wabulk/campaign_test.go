package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
)

// controlWorld is a real redis-server, the sandbox and a real `wabulk worker` process sending
// at a low rate, so a test can act on a campaign while it is being sent.
type controlWorld struct {
	t   *testing.T
	env []string
	rs  *redistest.Server
	sb  *sandbox.Server
}

func newControlWorld(t *testing.T, rate string) *controlWorld {
	t.Helper()
	rs := redistest.Start(t)
	sb := testkit.Sandbox(t, sandbox.Config{Balance: -1, Senders: []string{testkit.Sender}})
	env := []string{"WABULK_REDIS_URL=" + rs.URL, "KALEYRA_FROM=" + testkit.Sender}
	w := proctest.Start(t, append(env, "KALEYRA_SID="+testkit.SID, "KALEYRA_API_KEY="+testkit.APIKey,
		"KALEYRA_BASE_URL="+sb.URL, "WABULK_RATE="+rate, "WABULK_CONCURRENCY=4", "WABULK_METRICS_ADDR=",
		"WABULK_SHUTDOWN_TIMEOUT=5s"), "worker")
	t.Cleanup(func() { w.Signal(t, syscall.SIGTERM); w.Wait(t, 15*time.Second) })
	return &controlWorld{t: t, env: env, rs: rs, sb: sb}
}

// numbers returns n recipients of a series, one per line after a header, as a campaign file.
func seriesCSV(series, n int) string {
	var b strings.Builder
	b.WriteString("to,type,media_link\n")
	for i := range n {
		fmt.Fprintf(&b, "+9198%02d%06d,image,https://example.com/a.png\n", series, i)
	}
	return b.String()
}

// received counts the sandbox's calls for a series.
func (w *controlWorld) received(series int) int {
	prefix := fmt.Sprintf("+9198%02d", series)
	n := 0
	for _, c := range w.sb.Calls() {
		if strings.HasPrefix(c.To, prefix) {
			n++
		}
	}
	return n
}

func (w *controlWorld) cli(args ...string) cliResult {
	w.t.Helper()
	return runCLI(w.t, w.env, args...)
}

func (w *controlWorld) enqueue(campaign string, series, n int, extra ...string) cliResult {
	w.t.Helper()
	return w.cli(append([]string{"enqueue", "--campaign", campaign}, append(extra, writeFile(w.t, campaign+".csv", seriesCSV(series, n)))...)...)
}

// actMidway enqueues n recipients of a series as campaign id, runs `wabulk campaign act id` once
// the first sends arrive (it must print done), waits for the in-flight round to end and returns
// how many calls the sandbox had received by then.
func (w *controlWorld) actMidway(id string, series, n int, act, done string) int {
	w.t.Helper()
	if r := w.enqueue(id, series, n); r.code != 0 {
		w.t.Fatalf("enqueue: %+v", r)
	}
	testkit.Eventually(w.t, 20*time.Second, "the first sends of the campaign", func() bool { return w.received(series) >= 5 })
	if r := w.cli("campaign", act, id); r.code != 0 || !strings.Contains(r.stdout, done) {
		w.t.Fatalf("campaign %s: %+v", act, r)
	}
	w.settle(id) // the in-flight round: calls already made finish
	return w.received(series)
}

// settle waits for the campaign's in-flight round to end: no job of it active any more.
func (w *controlWorld) settle(id string) {
	w.t.Helper()
	var c store.CampaignInfo
	testkit.Eventually(w.t, 15*time.Second, "the in-flight round of "+id+" to end", func() bool {
		c = w.campaign(id)
		return c.Active == 0
	}, func() string { return fmt.Sprintf("%+v", c) })
}

func (w *controlWorld) campaign(id string) store.CampaignInfo {
	w.t.Helper()
	r := w.cli("status", "--campaign", id, "--json")
	var st ops.Status
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Campaigns) != 1 {
		w.t.Fatalf("status --campaign %s: %+v", id, r)
	}
	return st.Campaigns[0]
}

// TestCampaignPauseHoldsThenResumeSendsEachOnce: pause stops the sends after the in-flight
// round, nothing arrives for 5 s, a repeat says so, and resume sends every recipient once.
func TestCampaignPauseHoldsThenResumeSendsEachOnce(t *testing.T) {
	w := newControlWorld(t, "20")
	const n = 80
	held := w.actMidway("spring", 11, n, "pause", "paused")
	if c := w.campaign("spring"); c.State != store.StatePaused {
		t.Errorf("state %q while paused, want paused", c.State)
	}
	if r := w.cli("campaign", "pause", "spring"); r.code != 0 || !strings.Contains(r.stdout, "was paused already") {
		t.Errorf("second pause: %+v", r)
	}
	time.Sleep(5 * time.Second)
	if got := w.received(11); got != held {
		t.Fatalf("the sandbox received %d calls in the 5 s after the pause's in-flight round (%d → %d)", got-held, held, got)
	}
	if held >= n {
		t.Fatalf("all %d sent before the pause took effect: the test proves nothing", n)
	}
	if r := w.cli("campaign", "resume", "spring"); r.code != 0 || !strings.Contains(r.stdout, "resumed") {
		t.Fatalf("campaign resume: %+v", r)
	}
	// status --watch ends by itself once the campaign is finished.
	if r := w.cli("status", "--campaign", "spring", "--watch", "--interval", "200ms"); r.code != 0 {
		t.Fatalf("status --watch: %+v", r)
	}
	c := w.campaign("spring")
	if c.State != store.StateDone || c.Completed != n || c.StartedAt == nil || c.Priority != store.PriorityNormal {
		t.Errorf("after resume: %+v", c)
	}
	if st := w.sb.Stats(); len(st.Duplicates()) != 0 || w.received(11) != n {
		t.Errorf("sandbox received %d for %d recipients, duplicates %v", w.received(11), n, st.Duplicates())
	}
}

// TestCampaignCancelSendsNothingMore: after cancel and its in-flight round no call of the
// campaign arrives, the counts add up (completed + dead + cancelled = enqueued), the report lists
// every recipient once (the sent ones accepted, the others cancelled), a repeat says so, and
// enqueueing the same file again is refused and changes neither the calls nor the report.
func TestCampaignCancelSendsNothingMore(t *testing.T) {
	w := newControlWorld(t, "20")
	const n = 80
	held := w.actMidway("wrong-image", 12, n, "cancel", "cancelled")
	time.Sleep(3 * time.Second)
	if got := w.received(12); got != held || held >= n {
		t.Fatalf("calls after the cancel's in-flight round: %d → %d of %d", held, got, n)
	}
	var c store.CampaignInfo
	testkit.Eventually(t, 10*time.Second, "the cancelled campaign to drain", func() bool {
		c = w.campaign("wrong-image")
		return c.Finished()
	}, func() string { return fmt.Sprintf("%+v", c) })
	if c.State != store.StateCancelled || c.Completed+c.Dead+c.Cancelled != c.Enqueued || c.Enqueued != n ||
		c.Completed != int64(held) || c.CancelledAt == nil {
		t.Errorf("cancelled campaign %+v (sandbox received %d)", c, held)
	}
	w.checkCancelledReport("wrong-image", 12, n, held)
	if r := w.cli("campaign", "cancel", "wrong-image"); r.code != 0 || !strings.Contains(r.stdout, "was cancelled already") {
		t.Errorf("second cancel: %+v", r)
	}
	if r := w.enqueue("wrong-image", 12, n); r.code != 2 || !strings.Contains(r.stderr, "cancelled") {
		t.Errorf("enqueue into the cancelled campaign: %+v", r)
	}
	time.Sleep(time.Second)
	if got := w.received(12); got != held {
		t.Errorf("the re-enqueue sent %d more", got-held)
	}
	w.checkCancelledReport("wrong-image", 12, n, held)
	if r := w.cli("campaign", "pause", "nope"); r.code != 2 || !strings.Contains(r.stderr, "unknown campaign") {
		t.Errorf("pause of an unknown campaign: %+v", r)
	}
}

// checkCancelledReport reads `wabulk report` of a cancelled campaign of n recipients of a series
// of which the sandbox accepted sent: each recipient exactly once, those the sandbox received
// accepted, every other one cancelled.
func (w *controlWorld) checkCancelledReport(id string, series, n, sent int) {
	w.t.Helper()
	r := w.cli("report", "--campaign", id)
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if r.code != 0 || err != nil || len(rows) == 0 {
		w.t.Fatalf("report: %v %+v", err, r)
	}
	called := map[string]bool{}
	for _, c := range w.sb.Calls() {
		called[c.To] = true
	}
	states := map[string]string{}
	for _, row := range rows[1:] {
		if _, dup := states[row[0]]; dup {
			w.t.Errorf("report lists %s twice", row[0])
		}
		states[row[0]] = row[1]
	}
	accepted, cancelled := 0, 0
	for i := range n {
		to := fmt.Sprintf("+9198%02d%06d", series, i)
		switch st := states[to]; {
		case called[to] && st == store.ReportAccepted:
			accepted++
		case !called[to] && st == store.ReportCancelled:
			cancelled++
		default:
			w.t.Errorf("report: %s is %q (the sandbox received it: %v)", to, st, called[to])
		}
	}
	if len(rows)-1 != n || accepted != sent || cancelled != n-sent {
		w.t.Errorf("report: %d rows, %d accepted, %d cancelled; want %d, %d, %d", len(rows)-1, accepted, cancelled, n, sent, n-sent)
	}
}

// TestCampaignScheduledStartsOnTime: nothing is sent before --at; the first call comes within
// 2 s after it; until then the campaign shows as scheduled with its time, and ls lists it.
func TestCampaignScheduledStartsOnTime(t *testing.T) {
	w := newControlWorld(t, "50")
	at := time.Now().Add(4 * time.Second).Truncate(time.Second)
	if r := w.enqueue("nine-am", 13, 10, "--at", at.Format(time.RFC3339)); r.code != 0 {
		t.Fatalf("enqueue --at: %+v", r)
	}
	if c := w.campaign("nine-am"); c.State != store.StateScheduled || c.SendAt == nil || !c.SendAt.Equal(at) {
		t.Errorf("before its time: %+v", c)
	}
	r := w.cli("campaign", "ls")
	if r.code != 0 || !strings.Contains(r.stdout, "nine-am") || !strings.Contains(r.stdout, "scheduled") {
		t.Errorf("campaign ls: %+v", r)
	}
	testkit.Eventually(t, 15*time.Second, "the first send", func() bool { return w.received(13) > 0 })
	var first time.Time
	for _, c := range w.sb.Calls() {
		if strings.HasPrefix(c.To, "+919813") && (first.IsZero() || c.Time.Before(first)) {
			first = c.Time
		}
	}
	if first.Before(at) || first.After(at.Add(2*time.Second)) {
		t.Errorf("first call at %v, want within 2 s after %v", first.Format(time.RFC3339Nano), at.Format(time.RFC3339))
	}
	testkit.Eventually(t, 15*time.Second, "the scheduled campaign to finish", func() bool { return w.received(13) == 10 })
}

// TestCampaignCancelBeforeItsTime: a scheduled campaign cancelled before its time sends nothing.
func TestCampaignCancelBeforeItsTime(t *testing.T) {
	w := newControlWorld(t, "50")
	at := time.Now().Add(3 * time.Second)
	if r := w.enqueue("never", 14, 10, "--at", at.Format(time.RFC3339)); r.code != 0 {
		t.Fatalf("enqueue --at: %+v", r)
	}
	if r := w.cli("campaign", "cancel", "never"); r.code != 0 {
		t.Fatalf("cancel: %+v", r)
	}
	time.Sleep(time.Until(at) + 2*time.Second)
	if got := w.received(14); got != 0 {
		t.Errorf("a campaign cancelled before its time sent %d", got)
	}
	if c := w.campaign("never"); c.State != store.StateCancelled || c.Cancelled != 10 || !c.Finished() {
		t.Errorf("cancelled scheduled campaign: %+v", c)
	}
}

// monitor calls asynqmon's API through `wabulk serve`'s /monitor (Basic auth, the token as the
// password) and fails the test unless the answer is 2xx.
func monitor(t *testing.T, addr, method, path string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+"/monitor/api/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", serveToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s /monitor/api/%s: %d %s", method, path, resp.StatusCode, body)
	}
}

// TestAsynqmonActionsKeepCampaignCountsRight drives asynqmon through serve's /monitor as an
// operator would: pausing the campaign's lane pauses the campaign; deleting a pending task and
// archiving another leave counts that add up and a campaign that finishes; running the archived
// task sends it; resuming the lane resumes the campaign.
func TestAsynqmonActionsKeepCampaignCountsRight(t *testing.T) {
	w := newControlWorld(t, "2")
	_, addr := startServe(t, append(w.env, "WABULK_API_TOKENS="+serveToken), "--monitor-write")
	const n = 10
	if r := w.enqueue("mon", 15, n); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}
	lane := "whatsapp:mon:" + strings.TrimPrefix(testkit.Sender, "+")
	// The worker takes a round of jobs before the pause lands: the test acts on pending ones.
	monitor(t, addr, "POST", "queues/"+lane+":pause")
	w.settle("mon")
	if c := w.campaign("mon"); c.State != store.StatePaused {
		t.Fatalf("after pausing its lane in asynqmon the campaign is %q, want paused (%+v)", c.State, c)
	}
	held := w.received(15)
	if held >= n-2 {
		t.Fatalf("%d of %d sent before the lane's pause: nothing left to act on", held, n)
	}
	insp := asynq.NewInspector(w.rs.ConnOpt(t))
	defer insp.Close()
	pending, err := insp.ListPendingTasks(lane)
	if err != nil || len(pending) < 2 {
		t.Fatalf("pending tasks of %s: %d, %v", lane, len(pending), err)
	}
	deleted, archived := pending[0].ID, pending[1].ID
	monitor(t, addr, "DELETE", "queues/"+lane+"/pending_tasks/"+deleted)
	monitor(t, addr, "POST", "queues/"+lane+"/pending_tasks/"+archived+":archive")
	time.Sleep(time.Second)
	if got := w.received(15); got != held {
		t.Fatalf("%d sends while the lane was paused in asynqmon", got-held)
	}
	monitor(t, addr, "POST", "queues/"+lane+":resume")
	var c store.CampaignInfo
	testkit.Eventually(t, 15*time.Second, "the campaign to finish after the lane's resume", func() bool {
		c = w.campaign("mon")
		return c.Finished()
	}, func() string { return fmt.Sprintf("%+v", c) })
	// The deleted task is cancelled; the archived one is cancelled until the reconciler
	// records its dead letter (ARCHIVED), then dead: either way the counts add up.
	if c.State != store.StateDone || c.Completed != n-2 || c.Dead+c.Cancelled != 2 || c.Completed+c.Dead+c.Cancelled != c.Enqueued {
		t.Errorf("after delete and archive in asynqmon: %+v", c)
	}
	monitor(t, addr, "POST", "queues/"+lane+"/archived_tasks/"+archived+":run")
	testkit.Eventually(t, 15*time.Second, "the task run from the archive to be sent", func() bool {
		c = w.campaign("mon")
		return c.Completed == n-1 && c.Finished()
	}, func() string { return fmt.Sprintf("%+v", c) })
	if c.Completed+c.Dead+c.Cancelled != c.Enqueued || c.Cancelled != 1 {
		t.Errorf("after running the archived task: %+v", c)
	}
	if st := w.sb.Stats(); len(st.Duplicates()) != 0 || w.received(15) != n-1 {
		t.Errorf("sandbox received %d (want %d), duplicates %v", w.received(15), n-1, st.Duplicates())
	}
}

// TestSuppressImport: an import takes numbers one per line or as the first CSV column, skips a
// header, comments and blank lines, and adds them all; a file with a bad or oversized line adds
// nothing and names the line.
func TestSuppressImport(t *testing.T) {
	rs := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + rs.URL}
	good := writeFile(t, "good.csv", "number,reason\n+919812345601,asked\n\n# a comment\n919812345602\n\"+44 7911 123456\",x\n")
	if r := runCLI(t, env, "suppress", "import", good); r.code != 0 || !strings.Contains(r.stdout, "3 numbers read, 3 added") {
		t.Fatalf("suppress import: %+v", r)
	}
	for name, content := range map[string]string{
		"bad.csv":  "+919812345603\nnot-a-number\n+919812345604\n",
		"long.csv": "+919812345605\n" + strings.Repeat("9", 5000) + "\n",
	} {
		if r := runCLI(t, env, "suppress", "import", writeFile(t, name, content)); r.code != 2 || !strings.Contains(r.stderr, "line 2") {
			t.Errorf("suppress import %s: %+v", name, r)
		}
	}
	r := runCLI(t, env, "suppress", "ls")
	if r.code != 0 {
		t.Fatalf("suppress ls: %+v", r)
	}
	for _, n := range []string{"919812345601", "919812345602", "447911123456"} {
		if !strings.Contains(strings.ReplaceAll(r.stdout, "+", ""), n) {
			t.Errorf("suppress ls lacks %s:\n%s", n, r.stdout)
		}
	}
	for _, n := range []string{"919812345603", "919812345604", "919812345605"} {
		if strings.Contains(r.stdout, n) {
			t.Errorf("a failed import added %s:\n%s", n, r.stdout)
		}
	}
}
