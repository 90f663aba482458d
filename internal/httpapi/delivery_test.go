package httpapi

import (
	"encoding/csv"
	"net/http"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/job"
)

func TestReportAndSuppressionRoutes(t *testing.T) {
	e := setup(t, func(c *Config) { c.SuppressOn = []string{"131026"} })
	e.sentOne("rep", "+919812345601", "wamid.a")
	e.sentOne("rep", "+919812345602", "wamid.b")
	post := func(body string) {
		t.Helper()
		if r := e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(body)); r.code != 200 {
			t.Fatalf("callback: %d %s", r.code, r.body)
		}
	}
	post(callback("wamid.a", "read", 0))
	// Failed with a code of WABULK_SUPPRESS_ON: the number goes on the list.
	post(callback("wamid.b", "failed", 131026))

	r := e.do("GET", "/v1/campaigns/rep/report", "", nil)
	if r.code != 200 || r.header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("report: %d %v %s", r.code, r.header, r.body)
	}
	rows, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("report rows %v %v", rows, err)
	}
	got := map[string]string{}
	for _, row := range rows[1:] {
		got[row[0]] = row[1] + "/" + row[2] + "/" + row[3]
	}
	if got["+919812345601"] != "read//wamid.a" || got["+919812345602"] != "failed/131026/wamid.b" {
		t.Errorf("report %v", got)
	}
	for path, want := range map[string]int{"/v1/campaigns/nope/report": 404, "/v1/campaigns/a%20b/report": 400} {
		if r := e.do("GET", path, "", nil); r.code != want || r.problem(t).Code == "" {
			t.Errorf("GET %s = %d, want %d", path, r.code, want)
		}
	}

	// The list holds the failed number; the next enqueue skips it and counts it.
	if r := e.do("GET", "/v1/suppressions", "", nil); r.code != 200 || !strings.Contains(string(r.body), `"number":"+919812345602","source":"failed 131026"`) {
		t.Fatalf("suppressions: %d %s", r.code, r.body)
	}
	req := CampaignRequest{Campaign: "next", Defaults: job.Fields{Type: "image", MediaLink: link},
		Recipients: []job.Fields{{To: "+919812345602"}, {To: "+919812345603"}}}
	a := e.postJSON("/v1/campaigns", req).accepted(t)
	if a.Enqueued != 1 || a.Suppressed != 1 || statuses(a) != "0:suppressed 1:enqueued" {
		t.Errorf("enqueue with a suppressed number: %+v %s", a.Summary, statuses(a))
	}
	if c := e.counts("next"); c.Suppressed != 1 || c.Enqueued != 1 {
		t.Errorf("counts %+v", c)
	}
	// Every sender: the same number from another campaign and sender is skipped too.
	req2 := CampaignRequest{Campaign: "other", Defaults: job.Fields{Type: "image", MediaLink: link, From: "+919000000002"},
		Recipients: []job.Fields{{To: "+919812345602"}}}
	if a := e.postJSON("/v1/campaigns", req2).accepted(t); a.Suppressed != 1 || a.Enqueued != 0 {
		t.Errorf("other sender: %+v", a.Summary)
	}

	// Add, remove, and the bad inputs.
	if r := e.postJSON("/v1/suppressions", SuppressionRequest{Numbers: []string{"+919812345609", "+919812345609"}}); r.code != 200 || string(r.body) != "{\"added\":1}\n" {
		t.Errorf("add: %d %s", r.code, r.body)
	}
	if r := e.do("DELETE", "/v1/suppressions/+919812345609", "", nil); r.code != 200 || string(r.body) != "{\"removed\":1}\n" {
		t.Errorf("rm: %d %s", r.code, r.body)
	}
	for name, tc := range map[string]struct {
		ctype, body string
		want        int
	}{
		"not a number":  {"application/json", `{"numbers":["+1"]}`, 400},
		"empty":         {"application/json", `{"numbers":[]}`, 400},
		"unknown field": {"application/json", `{"numbers":["+919812345609"],"x":1}`, 400},
		"not json":      {"application/json", `numbers`, 400},
		"wrong type":    {"text/plain", `{"numbers":["+919812345609"]}`, 415},
		"too large":     {"application/json", `{"numbers":["` + strings.Repeat("9", 2<<20) + `"]}`, 413},
	} {
		if r := e.do("POST", "/v1/suppressions", tc.ctype, strings.NewReader(tc.body)); r.code != tc.want {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	if r := e.do("DELETE", "/v1/suppressions/abc", "", nil); r.code != 400 {
		t.Errorf("rm abc: %d", r.code)
	}
	for _, rt := range [][2]string{{"GET", "/v1/suppressions"}, {"POST", "/v1/suppressions"}, {"DELETE", "/v1/suppressions/+919812345609"}, {"GET", "/v1/campaigns/rep/report"}} {
		if r := e.do(rt[0], rt[1], "application/json", strings.NewReader(`{"numbers":["+919812345609"]}`), ""); r.code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d", rt[0], rt[1], r.code)
		}
	}
	e.rs.Stop()
	for _, rt := range [][2]string{{"GET", "/v1/suppressions"}, {"POST", "/v1/suppressions"}, {"DELETE", "/v1/suppressions/+919812345609"}, {"GET", "/v1/campaigns/rep/report"}} {
		if r := e.do(rt[0], rt[1], "application/json", strings.NewReader(`{"numbers":["+919812345609"]}`)); r.code != http.StatusServiceUnavailable {
			t.Errorf("%s %s with Redis down: %d %s", rt[0], rt[1], r.code, r.body)
		}
	}
}
