// Package promtest runs a real Prometheus server and promtool for tests: the dashboard's queries,
// the alert rules and the KEDA trigger's query are checked against what real wabulk processes
// export, not against a model of it.
//
// scripts/ensure-deps installs Debian's prometheus package (it ships both binaries) when they are
// missing. Without them the tests skip LOUDLY with the install command; they never pass silently.
package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Tool returns the path of the prometheus or promtool binary, skipping the test loudly when it
// is not installed.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPED LOUDLY: %s is not installed; run scripts/ensure-deps (Debian: apt-get install prometheus) to run this test", name)
	}
	return p
}

// Target is one scrape target.
type Target struct {
	// Job is the job label, as deploy/k8s's monitors set it (wabulk-worker, wabulk-serve).
	Job string
	// Addr is host:port of the target's /metrics.
	Addr string
	// Bearer is sent as Authorization: Bearer when set (serve's /metrics).
	Bearer string
	// Labels are added to every series of the target (e.g. namespace, as Kubernetes' service
	// discovery adds it).
	Labels map[string]string
}

// Options configure Start.
type Options struct {
	// Interval is the scrape and rule evaluation interval. Default 1s.
	Interval time.Duration
	// Targets are scraped at /metrics.
	Targets []Target
	// RuleFiles are loaded as rule_files (absolute paths).
	RuleFiles []string
}

// Server is a running Prometheus.
type Server struct {
	// URL is http://127.0.0.1:port.
	URL string
	// Dir holds the configuration, the TSDB and the log.
	Dir string
}

// Start runs prometheus on a free loopback port with a temporary directory and stops it when
// the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Tool(t, "prometheus")
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	dir := t.TempDir()
	cfg := map[string]any{
		"global":     map[string]any{"scrape_interval": o.Interval.String(), "evaluation_interval": o.Interval.String(), "scrape_timeout": o.Interval.String()},
		"rule_files": o.RuleFiles,
	}
	var scrapes []map[string]any
	for _, tg := range o.Targets {
		sc := map[string]any{"job_name": tg.Job, "static_configs": []map[string]any{{"targets": []string{tg.Addr}, "labels": tg.Labels}}}
		if tg.Bearer != "" {
			sc["authorization"] = map[string]any{"type": "Bearer", "credentials": tg.Bearer}
		}
		scrapes = append(scrapes, sc)
	}
	cfg["scrape_configs"] = scrapes
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("promtest: start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	s := &Server{URL: "http://" + addr, Dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("promtest: prometheus exited: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("promtest: prometheus not ready after 30s: %s", s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns what prometheus wrote so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "prometheus.log"))
	return string(b)
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// ErrBadQuery wraps Prometheus' answer to a query it cannot parse or run.
var ErrBadQuery = errors.New("query refused")

// Query runs an instant query now. A query that does not parse is an ErrBadQuery; a range
// vector or a scalar answer is an error too (dashboards and triggers use instant vectors).
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/query?"+url.Values{"query": {expr}}.Encode(), &body); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%w: %s: %s: %s", ErrBadQuery, expr, body.ErrorType, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("%w: %s: result type %s, want vector", ErrBadQuery, expr, body.Data.ResultType)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		str, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v", expr, r.Value[1])
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// Promtool runs promtool with args and returns its combined output and error.
func Promtool(t testing.TB, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(Tool(t, "promtool"), args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("promtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Rule is one loaded rule's state as /api/v1/rules reports it.
type Rule struct {
	Name, Health, LastError string
}

// Rules returns every loaded rule with its health ("ok" once evaluated without error).
func (s *Server) Rules(ctx context.Context) ([]Rule, error) {
	var body struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/rules", &body); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			out = append(out, Rule{Name: r.Name, Health: r.Health, LastError: r.LastError})
		}
	}
	return out, nil
}

// get decodes the JSON answer of Prometheus's API at path into v.
func (s *Server) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
