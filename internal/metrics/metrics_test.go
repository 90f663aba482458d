package metrics

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
)

// TestDocsTableIsTheCatalogue compares docs/metrics.md's table with All, row by row: name, type,
// labels and exporter, and no row more or less.
func TestDocsTableIsTheCatalogue(t *testing.T) {
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(wabulk_[a-z_]+)` \\| ([a-z]+) \\|([^|]*)\\|([^|]+)\\|")
	var docs []string
	for _, line := range strings.Split(string(b), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		docs = append(docs, fmt.Sprintf("%s %s %v by %s", m[1], m[2], labels, strings.TrimSpace(m[4])))
	}
	var code []string
	for _, d := range All() {
		code = append(code, fmt.Sprintf("%s %s %v by %s", d.Name, d.Kind, d.Labels, d.By))
	}
	if !slices.Equal(docs, code) {
		t.Fatalf("docs/metrics.md's table and internal/metrics disagree:\n docs: %s\n code: %s",
			strings.Join(docs, "\n       "), strings.Join(code, "\n       "))
	}
}

func TestBoundedLabels(t *testing.T) {
	for in, want := range map[string]string{"E110": "E110", "WA-401": "WA-401", "HTTP 503": "HTTP 503", "HTTP 5030": Other,
		"HTTP 99": Other, "SOMETHING_NEW": Other, "": "", "timeout": "timeout", "INVALID_PAYLOAD": "INVALID_PAYLOAD"} {
		if got := Code(in); got != want {
			t.Errorf("Code(%q) = %q, want %q", in, got, want)
		}
	}
	l := NewLimit(2)
	for _, v := range []string{"a", "b", "c", "a"} {
		l.Value(v)
	}
	if l.Value("c") != Other || l.Value("a") != "a" || l.Value("b") != "b" {
		t.Fatalf("Limit does not keep the first two values and map the rest to %q", Other)
	}
	for _, c := range []struct {
		status  int
		timeout bool
		want    string
	}{{202, false, "2xx"}, {429, false, "4xx"}, {503, false, "5xx"}, {0, true, "timeout"}, {0, false, "network"}} {
		if got := Class(c.status, c.timeout); got != c.want {
			t.Errorf("Class(%d, %v) = %q, want %q", c.status, c.timeout, got, c.want)
		}
	}
}

// gather collects reg and returns each sample of name as "label=value,… value".
func gather(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			out[labelString(m)] = m.GetGauge().GetValue()
		}
	}
	return out
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

// TestOneExporterAndTheRunnableBacklog runs two exporters on one namespace: exactly one exports
// the lanes, the other takes over when it stops, and the runnable backlog leaves out a paused
// lane and tasks scheduled past DueWithin while counting the pending, retrying and soon-due ones.
func TestOneExporterAndTheRunnableBacklog(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const ns = "obs"
	l := store.New(rdb, ns, time.Hour)

	// Lane a: 3 pending. Lane b: 2 pending, paused. Lane c: scheduled, 2 due soon, 4 in an hour.
	enq := l.Enqueuer("t", 3)
	la := store.Lane{Campaign: "spring", Sender: "+919000000001"}
	lb := store.Lane{Campaign: "spring", Sender: "+919000000002"}
	lc := store.Lane{Campaign: "later", Sender: "+919000000001"}
	for i, ln := range []store.Lane{la, lb} {
		name := l.LaneName(ln.Campaign, ln.Sender)
		var tasks []store.Task
		for j := range 3 - i {
			tasks = append(tasks, store.Task{ID: fmt.Sprintf("%s:%d", name, j), Payload: []byte("{}")})
		}
		if _, _, err := enq.Enqueue(ctx, name, tasks, true); err != nil {
			t.Fatal(err)
		}
		if err := l.RegisterLane(ctx, ln, false); err != nil {
			t.Fatal(err)
		}
	}
	cname := l.LaneName(lc.Campaign, lc.Sender)
	client := asynq.NewClientFromRedisClient(rdb)
	for i := range 6 {
		in := time.Hour
		if i < 2 {
			in = 30 * time.Second
		}
		if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(cname), asynq.ProcessIn(in)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.RegisterLane(ctx, lc, false); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.PauseQueue(l.LaneName(lb.Campaign, lb.Sender)); err != nil {
		t.Fatal(err)
	}
	if err := l.SetSenderRate(ctx, "+919000000002", 5, 0); err != nil {
		t.Fatal(err)
	}

	regs := make([]*prometheus.Registry, 2)
	stops := make([]context.CancelFunc, 2)
	dones := make([]chan struct{}, 2)
	exps := make([]*Exporter, 2)
	for i := range regs {
		regs[i] = prometheus.NewRegistry()
		exps[i] = NewExporter(store.New(rdb, ns, time.Hour))
		regs[i].MustRegister(exps[i])
		var rctx context.Context
		rctx, stops[i] = context.WithCancel(ctx)
		dones[i] = make(chan struct{})
		go func() { exps[i].Run(rctx); close(dones[i]) }()
		if i == 0 {
			testkit.Eventually(t, 5*time.Second, "the first exporter to take the lease", exps[0].Leader)
		}
	}
	defer func() {
		for i := range stops {
			stops[i]()
			<-dones[i]
		}
	}()
	if exps[1].Leader() {
		t.Fatal("both exporters hold the lease")
	}
	if got := gather(t, regs[1], LaneTasks.Name); len(got) != 0 {
		t.Fatalf("the exporter without the lease exports %d lane series", len(got))
	}
	got := gather(t, regs[0], Runnable.Name)
	if want := map[string]float64{"queue=obs": 3 + 2}; !mapsEqual(got, want) {
		t.Fatalf("runnable %v, want %v (lane a's 3 pending + lane c's 2 due soon; paused lane b and c's later 4 left out)", got, want)
	}
	paused := gather(t, regs[0], LanePaused.Name)
	if paused["campaign=spring,queue=obs,sender=919000000002"] != 1 || paused["campaign=spring,queue=obs,sender=919000000001"] != 0 {
		t.Fatalf("lane_paused %v", paused)
	}
	tasks := gather(t, regs[0], LaneTasks.Name)
	if tasks["campaign=later,queue=obs,sender=919000000001,state=scheduled"] != 6 || tasks["campaign=spring,queue=obs,sender=919000000002,state=pending"] != 2 {
		t.Fatalf("lane_tasks %v", tasks)
	}
	msgs := gather(t, regs[0], CampaignMessages.Name)
	if msgs["campaign=spring,queue=obs,state=enqueued"] != 5 {
		t.Fatalf("campaign_messages %v", msgs)
	}
	if cs := gather(t, regs[0], Campaigns.Name); !mapsEqual(cs, map[string]float64{"queue=obs,state=active": 2, "queue=obs,state=finished": 0}) {
		t.Fatalf("campaigns %v, want spring and later active, none finished", cs)
	}
	if rates := gather(t, regs[0], SenderRate.Name); rates["queue=obs,sender=919000000002"] != 5 {
		t.Fatalf("sender_rate %v: want the override 5 (the other sender has no default published yet)", rates)
	}

	// The holder stops: it frees the lease, and the other takes it at its next try.
	stops[0]()
	<-dones[0]
	stops[0] = func() {}
	testkit.Eventually(t, LeaseEvery+5*time.Second, "the second exporter to take over", exps[1].Leader)
	if got := gather(t, regs[1], Runnable.Name); got["queue=obs"] != 5 {
		t.Fatalf("runnable after the handover %v", got)
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestExporterRetiresLanesLeftIdle: a live lane that is empty and has sent nothing for two
// minutes (workers stopped before they retired it) is exported once, retired, and then no more,
// its campaign counted finished; a lane with work stays.
func TestExporterRetiresLanesLeftIdle(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	const ns = "idle"
	l := store.New(rdb, ns, time.Hour)
	busy := store.Lane{Campaign: "busy", Sender: "+919000000001"}
	if _, _, err := l.Enqueuer("t", 3).Enqueue(ctx, l.LaneName(busy.Campaign, busy.Sender), []store.Task{{ID: "busy:1", Payload: []byte("{}")}}, true); err != nil {
		t.Fatal(err)
	}
	for _, ln := range []store.Lane{busy, {Campaign: "stale", Sender: "+919000000001"}} {
		if err := l.RegisterLane(ctx, ln, false); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	exp := NewExporter(l)
	reg.MustRegister(exp)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { exp.Run(rctx); close(done) }()
	defer func() { stop(); <-done }()
	testkit.Eventually(t, 5*time.Second, "the exporter to take the lease", exp.Leader)

	lanes := func() []string {
		var cs []string
		for k := range gather(t, reg, LanePaused.Name) {
			cs = append(cs, k)
		}
		slices.Sort(cs)
		return cs
	}
	if got := lanes(); len(got) != 2 {
		t.Fatalf("first scrape: lanes %v, want busy and stale", got)
	}
	if got := lanes(); len(got) != 1 || !strings.Contains(got[0], "campaign=busy") {
		t.Errorf("second scrape: lanes %v, want busy only", got)
	}
	if cs := gather(t, reg, Campaigns.Name); !mapsEqual(cs, map[string]float64{"queue=idle,state=active": 1, "queue=idle,state=finished": 1}) {
		t.Errorf("campaigns %v, want busy active and stale finished", cs)
	}
}
