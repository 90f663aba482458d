package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/promtest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

const (
	queue = "whatsapp"
	token = "monitoring-test-token-0123456789"
)

// kedaQuery returns the query of the KEDA trigger as deploy/k8s/base ships it and the namespace
// it selects (the overlay replaces it with its own; the k8s tests check that).
func kedaQuery(t *testing.T) (query, namespace string) {
	t.Helper()
	b, err := os.ReadFile("../../deploy/k8s/base/worker-keda.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var so struct {
		Spec struct {
			Triggers []struct {
				Type     string            `yaml:"type"`
				Metadata map[string]string `yaml:"metadata"`
			} `yaml:"triggers"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &so); err != nil {
		t.Fatal(err)
	}
	for _, tr := range so.Spec.Triggers {
		if tr.Type == "prometheus" {
			query = tr.Metadata["query"]
		}
	}
	m := regexp.MustCompile(`namespace="([^"]+)"`).FindStringSubmatch(query)
	if m == nil || !strings.Contains(query, `queue="`+queue+`"`) {
		t.Fatalf("KEDA query %q: want namespace=\"…\" and queue=%q", query, queue)
	}
	return query, m[1]
}

// panelQueries are the dashboard's queries with its variables set as Grafana would for this
// test's namespace and queue (campaign and sender "All"), keyed by panel title and refId; and its
// variables' label_values(metric, label) queries as the PromQL that returns the same values.
func panelQueries(t *testing.T, namespace string) map[string]string {
	t.Helper()
	d := readDashboard(t)
	r := strings.NewReplacer("$__rate_interval", "10s", "$namespace", namespace, "$queue", queue,
		"$campaign", ".*", "$sender", ".*")
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[p.Title+" "+tg.RefID] = r.Replace(tg.Expr)
		}
	}
	lv := regexp.MustCompile(`^label_values\((.+), (\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := lv.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
		}
		out["variable "+v.Name] = fmt.Sprintf("group by (%s) (%s)", m[2], r.Replace(m[1]))
	}
	return out
}

// docsQueries are the queries of docs/metrics.md's "Questions and queries" table, keyed by
// question.
func docsQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Questions and queries\n")
	if !ok {
		t.Fatal(`docs/metrics.md has no "Questions and queries" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	out := map[string]string{}
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := regexp.MustCompile(`\s\|\s`).Split(strings.Trim(line, "| "), -1)
		if len(cells) != 2 || strings.HasPrefix(cells[0], "---") || cells[0] == "question" {
			continue
		}
		for i, m := range code.FindAllStringSubmatch(cells[1], -1) {
			out[fmt.Sprintf("docs/metrics.md %q %d", cells[0], i)] = strings.ReplaceAll(m[1], `\|`, "|")
		}
	}
	if len(out) < 10 {
		t.Fatalf("read %d queries from docs/metrics.md's table; the test's reading of it is out of date", len(out))
	}
	return out
}

// family is what a test saw of one exported metric: its type and label names.
type family struct {
	kind   string
	labels string
}

// recipient matches a label value holding one of the test's recipient numbers.
var recipient = regexp.MustCompile(`="[^"]*919[678][0-9]{8}`)

// scrape reads addr's /metrics as Prometheus does, checks it holds no secret and no recipient,
// and adds each family to seen.
func scrape(t *testing.T, addr, bearer string, seen map[string]map[family]bool) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the process is stopping
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return
	}
	// No secret and no recipient in any series: the test's recipients are +9196…, +9197…, +9198…;
	// the senders (+91900…) may appear.
	if bytes.Contains(body, []byte(testkit.APIKey)) || bytes.Contains(body, []byte(token)) {
		t.Errorf("%s/metrics holds a secret", addr)
	}
	if m := recipient.Find(body); m != nil {
		t.Errorf("%s/metrics holds a recipient number: %s", addr, m)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Errorf("parse %s/metrics: %v", addr, err)
		return
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				if l.GetName() != "le" && l.GetName() != "quantile" {
					ls = append(ls, l.GetName())
				}
			}
			sort.Strings(ls)
			if seen[name] == nil {
				seen[name] = map[family]bool{}
			}
			seen[name][family{strings.ToLower(f.GetType().String()), strings.Join(ls, ",")}] = true
		}
	}
}

// checkExported compares what the processes exported with the catalogue, exactly: every metric
// of internal/metrics seen with its type and labels, no other wabulk_* metric, and nothing but
// the standard collectors besides.
func checkExported(t *testing.T, seen map[string]map[family]bool) {
	t.Helper()
	want := map[string]family{}
	for _, d := range metrics.All() {
		ls := slices.Clone(d.Labels)
		sort.Strings(ls)
		want[d.Name] = family{string(d.Kind), strings.Join(ls, ",")}
	}
	for _, name := range slices.Sorted(maps.Keys(seen)) {
		w, ok := want[name]
		switch {
		case !ok && strings.HasPrefix(name, "wabulk_"):
			t.Errorf("exported %s, which docs/metrics.md (internal/metrics) does not list", name)
		case !ok && !metrics.IsStandard(name):
			t.Errorf("exported %s, neither wabulk's nor a standard collector's", name)
		case ok:
			for f := range seen[name] {
				if f != w {
					t.Errorf("%s exported as %s with labels [%s], listed as %s with [%s]", name, f.kind, f.labels, w.kind, w.labels)
				}
			}
		}
	}
	for name := range want {
		if seen[name] == nil {
			t.Errorf("%s is listed but no process exported it during the campaign", name)
		}
	}
}

func rows(series, n int, from string) iter.Seq[producer.Row] {
	return func(yield func(producer.Row) bool) {
		for i := range n {
			if !yield(producer.Row{Fields: job.Fields{To: fmt.Sprintf("+9198%02d%06d", series, i), From: from, Type: "image",
				MediaLink: "https://example.com/a.png"}}) {
				return
			}
		}
	}
}

// TestEveryPanelAlertAndTheKEDAQueryAgainstRealProcesses runs a real Prometheus that scrapes a
// real worker and a real `wabulk serve` every 2 seconds during a sandbox campaign with retries and
// dead letters, a paused lane and a campaign scheduled for later. Every query of the dashboard
// and of docs/metrics.md must parse and return data, every alert rule must evaluate, and the processes must export
// exactly the metrics docs/metrics.md lists. Then the worker stops: the KEDA trigger's query,
// now answered by serve's lane exporter, must be exactly the runnable backlog: the pending tasks
// of a lane that is not paused and the scheduled tasks due within 2 minutes, without the paused
// lane's tasks or those scheduled for an hour later.
func TestEveryPanelAlertAndTheKEDAQueryAgainstRealProcesses(t *testing.T) {
	promtest.Tool(t, "prometheus")
	ctx := context.Background()
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	ledger := store.New(rdb, queue, time.Hour)
	sb := testkit.Sandbox(t, sandbox.Config{Balance: -1, Rates: map[string]float64{"WA500": 0.05, "WA400": 0.03},
		Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
	kq, ns := kedaQuery(t)

	workerAddr, serveAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	common := []string{"WABULK_REDIS_URL=" + rs.URL, "WABULK_QUEUE=" + queue, "WABULK_LOG_LEVEL=warn"}
	worker := proctest.Start(t, append(slices.Clone(common), "KALEYRA_SID="+testkit.SID, "KALEYRA_API_KEY="+testkit.APIKey,
		"KALEYRA_BASE_URL="+sb.URL, "KALEYRA_FROM="+testkit.Sender, "WABULK_METRICS_ADDR="+workerAddr,
		"WABULK_RATE=25", "WABULK_CONCURRENCY=20", "WABULK_RETRY_BASE=200ms", "WABULK_RETRY_MAX=1s",
		"WABULK_PAUSE_ON=E110", "WABULK_SHUTDOWN_TIMEOUT=5s"), "worker")
	serve := proctest.Start(t, append(slices.Clone(common), "WABULK_ADDR="+serveAddr, "WABULK_API_TOKENS="+token), "serve")
	for _, addr := range []string{workerAddr, serveAddr} {
		testkit.Eventually(t, 30*time.Second, addr+"/healthz", func() bool {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, func() string { return "worker: " + worker.Stderr() + "\nserve: " + serve.Stderr() })
	}
	rules, err := filepath.Abs(filepath.Join(dir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"namespace": ns}
	// Every 2 s: often enough for rates within the campaign's seconds, with room for a slow
	// scrape of a race-built process on a busy machine (the scrape timeout is the interval).
	prom := promtest.Start(t, promtest.Options{Interval: 2 * time.Second, RuleFiles: []string{rules}, Targets: []promtest.Target{
		{Job: "wabulk-worker", Addr: workerAddr, Labels: labels},
		{Job: "wabulk-serve", Addr: serveAddr, Bearer: token, Labels: labels},
	}})

	// Campaign spring through serve's API, summer through the producer, from the other sender.
	var body bytes.Buffer
	var recips []map[string]string
	for i := range 400 {
		recips = append(recips, map[string]string{"to": fmt.Sprintf("+9197%08d", i)})
	}
	json.NewEncoder(&body).Encode(map[string]any{"campaign": "spring", "recipients": recips,
		"defaults": map[string]string{"type": "image", "media_link": "https://example.com/a.png", "from": testkit.Sender}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+serveAddr+"/v1/campaigns", &body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("POST /v1/campaigns: %v %v", resp, err)
	}
	resp.Body.Close()
	p, err := producer.New(rs.ConnOpt(t), producer.Config{Queue: queue, MaxRetry: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	enqueue := func(campaign string, series, n int, from string) {
		t.Helper()
		if sum, err := p.Campaign(ctx, campaign, rows(series, n, from), producer.Options{}, nil); err != nil || sum.Enqueued != n {
			t.Fatalf("enqueue %s: %+v %v", campaign, sum, err)
		}
	}
	enqueue("summer", 1, 200, testkit.Sender2)
	// A lane paused before its first task: its 30 tasks wait.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.PauseQueue(ledger.LaneName("held", testkit.Sender2)); err != nil {
		t.Fatal(err)
	}
	enqueue("held", 2, 30, testkit.Sender2)
	// A campaign scheduled with asynq: 3 tasks due in 90 s (runnable: within 2 minutes), 5 in an
	// hour (not yet).
	later := store.Lane{Campaign: "later", Sender: testkit.Sender}
	client := asynq.NewClientFromRedisClient(rdb)
	for i := range 8 {
		in := time.Hour
		if i < 3 {
			in = 90 * time.Second
		}
		pl, _ := json.Marshal(job.Payload{Campaign: "later", To: fmt.Sprintf("+9196%08d", i), From: testkit.Sender, Type: "image", MediaLink: "https://example.com/a.png"})
		if _, err := client.Enqueue(asynq.NewTask(job.TaskType, pl), asynq.Queue(ledger.LaneName(later.Campaign, later.Sender)), asynq.ProcessIn(in)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ledger.RegisterLane(ctx, later, false); err != nil {
		t.Fatal(err)
	}

	// While the campaigns run: every dashboard query returns data at least once, and the
	// processes' /metrics are read as Prometheus reads them.
	queries := panelQueries(t, ns)
	maps.Copy(queries, docsQueries(t))
	pending := maps.Clone(queries)
	seen := map[string]map[family]bool{}
	testkit.Eventually(t, 60*time.Second, "every dashboard query to return data", func() bool {
		scrape(t, workerAddr, "", seen)
		scrape(t, serveAddr, token, seen)
		for name, q := range pending {
			res, err := prom.Query(ctx, q)
			if err != nil {
				t.Fatalf("panel %q: %v", name, err)
			}
			if len(res) > 0 {
				delete(pending, name)
			}
		}
		if len(pending) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		return len(pending) == 0
	}, func() string {
		return fmt.Sprintf("no data yet for %v", slices.Sorted(maps.Keys(pending)))
	})
	t.Logf("%d queries of the dashboard and docs/metrics.md returned data", len(queries))

	// Both finish; then every rule has evaluated without error.
	for _, c := range []string{"spring", "summer"} {
		testkit.Eventually(t, 60*time.Second, c+" to finish", func() bool {
			n, err := ledger.Counts(ctx, c)
			return err == nil && n.Enqueued > 0 && n.Completed+n.Dead == n.Enqueued
		})
	}
	scrape(t, workerAddr, "", seen)
	scrape(t, serveAddr, token, seen)
	checkExported(t, seen)
	rs2, err := prom.Rules(ctx)
	if err != nil || len(rs2) == 0 {
		t.Fatalf("rules: %v %v", rs2, err)
	}
	for _, r := range rs2 {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
		}
	}

	// The worker stops (scaled to zero): serve takes the exporter lease, and a campaign enqueued
	// now waits. The KEDA query must be exactly the runnable backlog.
	worker.Signal(t, syscall.SIGTERM)
	if code := worker.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("worker exit %d: %s", code, worker.Stderr())
	}
	enqueue("after", 3, 20, testkit.Sender)
	const want = 20 + 3 // after's pending + later's tasks due within 2 minutes
	var got []promtest.Sample
	testkit.Eventually(t, 30*time.Second, "the KEDA query to return the runnable backlog from serve", func() bool {
		ex, err := prom.Query(ctx, `wabulk_lane_exporter{job="wabulk-serve"} == 1`)
		if err != nil || len(ex) != 1 {
			return false
		}
		got, err = prom.Query(ctx, kq)
		return err == nil && len(got) == 1 && got[0].Value == want
	}, func() string { return fmt.Sprintf("%s = %v", kq, got) })
	// The one exporter: lane series come from one instance only.
	var inst []promtest.Sample
	testkit.Eventually(t, 10*time.Second, "lane series from one instance", func() bool {
		inst, err = prom.Query(ctx, `count(count by (instance) (wabulk_lane_tasks))`)
		return err == nil && len(inst) == 1 && inst[0].Value == 1
	}, func() string { return fmt.Sprintf("%v %v", inst, err) })
}
