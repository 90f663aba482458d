package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/worker"
)

// chromium finds Debian's chromium (installed by scripts/ensure-deps) or another Chrome.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where the screenshot stays after the test: artifacts/ at the repository root
// (git ignores it), or $WABULK_ARTIFACTS.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("WABULK_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// TestMonitorInChromium is the operator's path end to end: a campaign posted to the API, a worker
// sending it through the sandbox where one recipient's account has no balance (E110), then in a
// real headless browser: log in to /monitor/, see the campaigns' lanes (asynq queues
// whatsapp:<campaign>:<sender>) with their pending and archived counts, open the archived task and
// read the E110 error. Then, with --monitor-write, a page of another origin that auto-submits a
// form to asynqmon's pause route (the browser adds the login, as it does a cached Basic-auth
// one) pauses nothing, while asynqmon's own Pause button still pauses the lane.
func TestMonitorInChromium(t *testing.T) {
	exe := chromium()
	if exe == "" {
		t.Skip("!!!!!!!! SKIPPED: chromium is not installed, so the /monitor/ browser test did not run. " +
			"Install it (Debian: apt-get install -y chromium, or `make deps`) to run it. !!!!!!!!")
	}
	start := time.Now()
	e := setup(t, func(c *Config) { c.MaxRecipients, c.MonitorWrite = 100, true })
	// Every change through /monitor/ the browser makes, with its status: set before the server
	// starts, so its goroutines read it after this write.
	monitorPosts := make(chan int, 16)
	observe := e.srv.observe
	e.srv.observe = func(method, pattern string, status int) {
		observe(method, pattern, status)
		if method == "POST" && pattern == MonitorPath {
			select {
			case monitorPosts <- status:
			default:
			}
		}
	}
	ts := httptest.NewServer(e.h)
	t.Cleanup(ts.Close)

	sb, err := sandbox.Start(sandbox.Config{SID: testkit.SID, APIKey: testkit.APIKey, Senders: []string{testkit.Sender}, Balance: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	const broke = "+919812345601"
	sb.Script(broke, "E110")

	a := e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "e2e", Defaults: job.Fields{Type: "image", MediaLink: link, Ref: "browser"},
		Recipients: []job.Fields{{To: broke}, {To: "+919812345602"}}}).accepted(t)
	if a.Enqueued != 2 {
		t.Fatalf("campaign e2e: %+v", a.Summary)
	}

	// A worker sends e2e: one job completes, the E110 one is archived (dead-lettered).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, worker.Config{Redis: e.rs.ConnOpt(t), Queue: testQueue, From: testkit.Sender, Rate: 1000,
			Concurrency: 4, ShutdownTimeout: 2 * time.Second,
			Kaleyra: worker.KaleyraConfig{SID: testkit.SID, APIKey: testkit.APIKey, BaseURL: sb.URL, Timeout: 2 * time.Second}}, zap.NewNop())
	}()
	var r resp
	testkit.Eventually(t, 20*time.Second, "campaign e2e to finish (1 sent, 1 dead and archived)", func() bool {
		var st CampaignStatus
		r = e.do("GET", "/v1/campaigns/e2e", "", nil)
		return r.code == 200 && json.Unmarshal(r.body, &st) == nil && st.Campaign.Completed == 1 && st.Campaign.Dead == 1 && st.Queue.Archived == 1
	}, func() string { return string(r.body) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("worker.Run: %v", err)
	}
	// With the worker stopped, a second campaign stays pending.
	b := e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "later", Defaults: job.Fields{Type: "image", MediaLink: link},
		Recipients: []job.Fields{{To: "+919812345603"}, {To: "+919812345604"}, {To: "+919812345605"}}}).accepted(t)
	if b.Enqueued != 3 {
		t.Fatalf("campaign later: %+v", b.Summary)
	}
	t.Logf("setup (Redis, sandbox, campaigns, worker): %v", time.Since(start))

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	browserStart := time.Now()
	// The first Run starts the browser and must not carry the timeout (it would bound the
	// browser's life); the steps after it get 40 s.
	if err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		// Log in the way a browser does after the Basic-auth prompt: the header on every
		// request, the page's own API calls included.
		login := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+testToken))
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": login}})
		return err
	})); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, tcancel := context.WithTimeout(bctx, 40*time.Second)
	defer tcancel()

	shot := filepath.Join(artifactDir(t), "monitor-archived-task.png")
	text := func(dst *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			s, err := chromedp.Text(chromedp.CSS("body"))(ctx, tg)
			*dst = s
			return err
		})
	}
	e2eLane, laterLane := lane("e2e"), lane("later")
	var dash, pending, queue, task string
	var png []byte
	err = chromedp.Do(tctx,
		chromedp.Navigate(ts.URL+"/monitor/"),
		chromedp.WaitVisible(chromedp.Search(`//td[normalize-space(.)="`+e2eLane+`"] | //a[normalize-space(.)="`+e2eLane+`"]`)),
		chromedp.WaitVisible(chromedp.Search(`//td[normalize-space(.)="`+laterLane+`"] | //a[normalize-space(.)="`+laterLane+`"]`)),
		text(&dash),
		chromedp.Navigate(ts.URL+"/monitor/queues/"+laterLane+"?status=pending"),
		chromedp.WaitVisible(chromedp.Search(`//td[contains(., "919812345603")]`)),
		text(&pending),
		chromedp.Navigate(ts.URL+"/monitor/queues/"+e2eLane+"?status=archived"),
		chromedp.WaitVisible(chromedp.Search(`//td[contains(., "E110")]`)),
		text(&queue),
		chromedp.Click(chromedp.Search(`//tr[td[contains(., "E110")]]/td[2]`)),
		chromedp.WaitVisible(chromedp.Search(`//*[contains(text(), "Last Failure")]`)),
		text(&task),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			b, err := chromedp.FullScreenshot(100)(ctx, tg)
			png = b
			return err
		}),
	)
	if len(png) == 0 {
		// Whatever went wrong, a picture of the page says more than the error.
		png, _ = chromedp.Run(bctx, chromedp.FullScreenshot(100))
	}
	if len(png) > 0 {
		if werr := os.WriteFile(shot, png, 0o644); werr == nil {
			t.Logf("screenshot of /monitor/: %s", shot)
		}
	}
	if err != nil {
		now, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("browser: %v\ndashboard: %.600s\npending: %.600s\nqueue: %.600s\ntask: %.600s\npage now: %.800s", err, dash, pending, queue, task, now)
	}
	t.Logf("browser (start, login, three pages, screenshot): %v", time.Since(browserStart))

	for _, ln := range []string{e2eLane, laterLane} {
		if !strings.Contains(dash, ln) {
			t.Errorf("dashboard does not show the lane %s: %.600s", ln, dash)
		}
	}
	// A lane page's tabs carry its counts: 3 pending (campaign later), 1 archived (E110, e2e).
	for _, c := range []struct {
		page, lane, state string
		n                 int
	}{{pending, laterLane, "Pending", 3}, {queue, e2eLane, "Archived", 1}} {
		if !regexp.MustCompile(fmt.Sprintf(`%s\s*%d\b`, c.state, c.n)).MatchString(c.page) {
			t.Errorf("page of lane %s does not show %s %d: %.800s", c.lane, c.state, c.n, c.page)
		}
	}
	if !strings.Contains(task, "E110") || !strings.Contains(task, "e2e:919000000001:919812345601") {
		t.Errorf("task page does not show the archived task with its E110 error: %.1200s", task)
	}
	if !strings.Contains(task, `"campaign": "e2e"`) {
		t.Errorf("task page does not show the payload as readable JSON: %.1200s", task)
	}

	// CSRF: a page on another origin (localhost is another site than 127.0.0.1) posts a form
	// to the pause route of the lane `later`; the browser sends the login with it.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<html><body><form id="f" method="POST" enctype="text/plain" action="%s/monitor/api/queues/%s:pause">`+
			`<input name="x" value="y"></form><script>document.getElementById("f").submit()</script></body></html>`, ts.URL, laterLane)
	}))
	t.Cleanup(attacker.Close)
	attackerURL := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)
	paused := func() bool {
		q, err := e.insp.GetQueueInfo(laterLane)
		if err != nil {
			t.Fatalf("queue %s: %v", laterLane, err)
		}
		return q.Paused
	}
	post := func(what string) int {
		select {
		case st := <-monitorPosts:
			return st
		case <-time.After(15 * time.Second):
			now, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: no POST reached /monitor/ within 15s; page now: %.600s", what, now)
			return 0
		}
	}
	if err := chromedp.Do(tctx, chromedp.Navigate(attackerURL)); err != nil {
		t.Fatalf("open the attacker's page: %v", err)
	}
	if st := post("the attacker's form"); st != http.StatusForbidden {
		t.Errorf("the cross-site form's POST was answered %d, want 403", st)
	}
	if paused() {
		t.Fatalf("a form on another origin paused the lane %s", laterLane)
	}

	// asynqmon's own Pause button on the dashboard still works.
	row := `//tr[.//a[normalize-space(.)="` + laterLane + `"]]`
	err = chromedp.Do(tctx,
		chromedp.Navigate(ts.URL+"/monitor/"),
		chromedp.WaitVisible(chromedp.Search(row)),
		// The row's "…" button shows its action icons.
		chromedp.Click(chromedp.Search(row+`/td[last()]//button`)),
		chromedp.Click(chromedp.Search(row+`//button[@title="Pause"]`)),
	)
	if err != nil {
		now, _ := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.Search(row)))
		t.Fatalf("pause from the monitor's page: %v\nthe lane's row: %.3000s", err, now)
	}
	if st := post("the Pause button"); st != http.StatusNoContent {
		t.Errorf("the Pause button's POST was answered %d, want 204", st)
	}
	if !paused() {
		t.Errorf("asynqmon's Pause button did not pause the lane %s", laterLane)
	}
	t.Logf("whole test: %v", time.Since(start))
}
