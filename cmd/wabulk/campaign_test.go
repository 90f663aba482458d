package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

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
	return &controlWorld{t: t, env: env, sb: sb}
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
	if r := w.enqueue("spring", 11, n); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}
	testkit.Eventually(t, 20*time.Second, "the first sends of the campaign", func() bool { return w.received(11) >= 5 })
	if r := w.cli("campaign", "pause", "spring"); r.code != 0 || !strings.Contains(r.stdout, "paused") {
		t.Fatalf("campaign pause: %+v", r)
	}
	time.Sleep(time.Second) // the in-flight round: calls already made finish
	held := w.received(11)
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
// campaign arrives, the counts add up (completed + dead + cancelled = enqueued), a repeat says so,
// and enqueueing the same file again is refused.
func TestCampaignCancelSendsNothingMore(t *testing.T) {
	w := newControlWorld(t, "20")
	const n = 80
	if r := w.enqueue("wrong-image", 12, n); r.code != 0 {
		t.Fatalf("enqueue: %+v", r)
	}
	testkit.Eventually(t, 20*time.Second, "the first sends of the campaign", func() bool { return w.received(12) >= 5 })
	if r := w.cli("campaign", "cancel", "wrong-image"); r.code != 0 || !strings.Contains(r.stdout, "cancelled") {
		t.Fatalf("campaign cancel: %+v", r)
	}
	time.Sleep(time.Second)
	held := w.received(12)
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
	if r := w.cli("campaign", "pause", "nope"); r.code != 2 || !strings.Contains(r.stderr, "unknown campaign") {
		t.Errorf("pause of an unknown campaign: %+v", r)
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
