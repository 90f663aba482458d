package monitoring

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/promtest"
)

// dir is deploy/monitoring, seen from this package.
const dir = "../../deploy/monitoring"

func TestAlertRulesPassPromtoolCheck(t *testing.T) {
	out, err := promtest.Promtool(t, "check", "rules", filepath.Join(dir, "alerts.yaml"))
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertRulesUnitTests runs alerts.test.yaml: each alert fires on the series it is meant for,
// at the time it is meant to, and stays quiet on the others.
func TestAlertRulesUnitTests(t *testing.T) {
	abs, err := filepath.Abs(filepath.Join(dir, "alerts.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := promtest.Promtool(t, "test", "rules", abs)
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert has a unit test.
	rules, _ := os.ReadFile(filepath.Join(dir, "alerts.yaml"))
	tests, _ := os.ReadFile(abs)
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(rules), -1) {
		if !strings.Contains(string(tests), "alertname: "+m[1]+"\n") {
			t.Errorf("alert %s has no test in alerts.test.yaml", m[1])
		}
	}
}

// TestComposePrometheusConfig checks compose's prometheus.yml as Prometheus reads it, with the
// rules and the token file beside it as compose mounts them.
func TestComposePrometheusConfig(t *testing.T) {
	tmp := t.TempDir()
	for _, f := range []string{"prometheus.yml", "alerts.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "metrics-token"), []byte("metrics-token-change-me-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := promtest.Promtool(t, "check", "config", filepath.Join(tmp, "prometheus.yml"))
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// dashboard is the part of Grafana's dashboard JSON the tests read.
type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			IncludeAll bool   `json:"includeAll"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "grafana", "wabulk.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("wabulk.json: %v", err)
	}
	return d
}

// TestDashboardIsWellFormed checks what Grafana needs and no query run can: unique panel ids,
// every panel on the data source variable with at least one query, and every variable a query
// uses defined (those that may be "All" with the regex .* as their all value).
func TestDashboardIsWellFormed(t *testing.T) {
	d := readDashboard(t)
	vars := map[string]bool{"__rate_interval": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.IncludeAll && v.AllValue != ".*" {
			t.Errorf("variable %s: all value %q, want .* (the queries match it with =~)", v.Name, v.AllValue)
		}
	}
	ids := map[int]bool{}
	use := regexp.MustCompile(`\$(\w+)`)
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want the ${datasource} variable and at least one query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range use.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] {
					t.Errorf("panel %q: query uses $%s, which is no variable", p.Title, m[1])
				}
			}
		}
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name       string `json:"name"`
		Type       string `json:"type"`
		Definition string `json:"definition"`
		IncludeAll bool   `json:"includeAll"`
		AllValue   string `json:"allValue"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Errorf("no datasource variable")
	}
}
