package httpapi

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

func (e *env) senders() []ops.SenderInfo {
	e.t.Helper()
	r := e.do("GET", "/v1/senders", "", nil)
	if r.code != 200 {
		e.t.Fatalf("GET /v1/senders = %d %s", r.code, r.body)
	}
	var ss []ops.SenderInfo
	if err := json.Unmarshal(r.body, &ss); err != nil {
		e.t.Fatalf("GET /v1/senders body %s: %v", r.body, err)
	}
	return ss
}

func find(ss []ops.SenderInfo, number string) (ops.SenderInfo, bool) {
	for _, s := range ss {
		if s.Number == number {
			return s, true
		}
	}
	return ops.SenderInfo{}, false
}

func TestSendersSetListAndClear(t *testing.T) {
	t.Setenv("WABULK_RATE", "30") // the server's environment: the default when no worker published one
	e := setup(t)
	if ss := e.senders(); len(ss) != 0 {
		t.Fatalf("senders before anything = %+v, want an empty list", ss)
	}

	// Set, with the number URL-encoded or written loosely: both name +919876543210.
	r := e.do("PUT", "/v1/senders/%2B919876543210", "application/json", strings.NewReader(`{"rate": 20}`))
	var set SenderSetting
	if r.code != 200 || json.Unmarshal(r.body, &set) != nil || set != (SenderSetting{"+919876543210", 20, 2, true}) {
		t.Fatalf("PUT rate 20 = %d %s, want 200 with +919876543210 20/s burst 2", r.code, r.body)
	}
	r = e.do("PUT", "/v1/senders/"+url.PathEscape("91 98765-43211"), "application/json; charset=utf-8", strings.NewReader(`{"rate":0.5,"burst":3}`))
	if r.code != 200 || !strings.Contains(string(r.body), `"number":"+919876543211"`) {
		t.Fatalf("PUT with burst = %d %s", r.code, r.body)
	}

	// A sender with work waiting and sends counted, but no override, has the default.
	camp := CampaignRequest{Campaign: "c", Defaults: job.Fields{Type: "image", MediaLink: link, From: "+919876543212"},
		Recipients: []job.Fields{{To: "+919812345601"}, {To: "+919812345602"}}}
	if a := e.postJSON("/v1/campaigns", camp).accepted(t); a.Enqueued != 2 {
		t.Fatalf("enqueue: %+v", a)
	}
	counter := store.New(e.rs.Client(t), testQueue, time.Hour).NewSendCounter()
	for range 3 {
		counter.Add("+919876543210")
	}
	if err := counter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	ss := e.senders()
	want := []ops.SenderInfo{
		{Number: "+919876543210", Rate: 20, Burst: 2, Override: true, SentLastMinute: 3},
		{Number: "+919876543211", Rate: 0.5, Burst: 3, Override: true},
		{Number: "+919876543212", Rate: 30, Burst: 3, Backlog: 2},
	}
	if len(ss) != len(want) {
		t.Fatalf("senders = %+v, want %+v", ss, want)
	}
	for i := range want {
		if ss[i] != want[i] {
			t.Errorf("sender %d = %+v, want %+v", i, ss[i], want[i])
		}
	}

	// {"rate": null} and DELETE both go back to the default; deleting twice is fine.
	if r := e.do("PUT", "/v1/senders/+919876543210", "application/json", strings.NewReader(`{"rate":null}`)); r.code != 204 {
		t.Errorf("PUT rate null = %d %s, want 204", r.code, r.body)
	}
	for range 2 {
		if r := e.do("DELETE", "/v1/senders/919876543211", "", nil); r.code != 204 {
			t.Errorf("DELETE = %d %s, want 204", r.code, r.body)
		}
	}
	ss = e.senders()
	if s, ok := find(ss, "+919876543210"); !ok || s.Override || s.Rate != 30 || s.SentLastMinute != 3 {
		t.Errorf("after clearing: %+v (listed %v), want the default 30/s and its 3 sends", s, ok)
	}
	if _, ok := find(ss, "+919876543211"); ok {
		t.Errorf("cleared sender with no work still listed: %+v", ss)
	}

	// Once a worker has published its default, that is what senders without an override show.
	if _, err := store.New(e.rs.Client(t), testQueue, time.Hour).SyncSenderRates(context.Background(), store.SenderRate{Rate: 12}); err != nil {
		t.Fatal(err)
	}
	if s, _ := find(e.senders(), "+919876543212"); s.Rate != 12 || s.Burst != 2 {
		t.Errorf("with a published default: %+v, want 12/s burst 2", s)
	}
}

func TestSendersRefuseBadInput(t *testing.T) {
	e := setup(t)
	const path = "/v1/senders/+919876543210"
	for _, tc := range []struct {
		name, method, path, ctype, body, auth string
		status                                int
		code                                  string
	}{
		{"malformed JSON", "PUT", path, "application/json", `{"rate":`, "", 400, CodeBadJSON},
		{"empty body", "PUT", path, "application/json", ``, "", 400, CodeBadJSON},
		{"not an object", "PUT", path, "application/json", `20`, "", 400, CodeBadJSON},
		{"unknown key", "PUT", path, "application/json", `{"rate":20,"rat":5}`, "", 400, CodeBadJSON},
		{"two JSON values", "PUT", path, "application/json", `{"rate":20}{"rate":30}`, "", 400, CodeBadJSON},
		{"rate as a string", "PUT", path, "application/json", `{"rate":"20"}`, "", 400, CodeBadJSON},
		{"rate as a bool", "PUT", path, "application/json", `{"rate":true}`, "", 400, CodeBadJSON},
		{"rate as an object", "PUT", path, "application/json", `{"rate":{"$gt":0}}`, "", 400, CodeBadJSON},
		{"rate overflowing a double", "PUT", path, "application/json", `{"rate":1e400}`, "", 400, CodeBadJSON},
		{"burst not an integer", "PUT", path, "application/json", `{"rate":20,"burst":1.5}`, "", 400, CodeBadJSON},
		{"burst overflowing an int", "PUT", path, "application/json", `{"rate":20,"burst":99999999999999999999}`, "", 400, CodeBadJSON},
		{"no rate", "PUT", path, "application/json", `{}`, "", 400, CodeInvalidRequest},
		{"burst alone", "PUT", path, "application/json", `{"burst":3}`, "", 400, CodeInvalidRequest},
		{"zero rate", "PUT", path, "application/json", `{"rate":0}`, "", 400, CodeInvalidRequest},
		{"negative rate", "PUT", path, "application/json", `{"rate":-5}`, "", 400, CodeInvalidRequest},
		{"tiny negative rate", "PUT", path, "application/json", `{"rate":-1e-300}`, "", 400, CodeInvalidRequest},
		{"rate over the limiter's max", "PUT", path, "application/json", `{"rate":1000001}`, "", 400, CodeInvalidRequest},
		{"zero burst", "PUT", path, "application/json", `{"rate":20,"burst":0}`, "", 400, CodeInvalidRequest},
		{"huge burst", "PUT", path, "application/json", `{"rate":20,"burst":1000001}`, "", 400, CodeInvalidRequest},
		{"burst with a null rate", "PUT", path, "application/json", `{"rate":null,"burst":3}`, "", 400, CodeInvalidRequest},
		{"letters for a number", "PUT", "/v1/senders/abc", "application/json", `{"rate":20}`, "", 400, CodeInvalidRequest},
		{"too short a number", "PUT", "/v1/senders/+1", "application/json", `{"rate":20}`, "", 400, CodeInvalidRequest},
		{"too long a number", "PUT", "/v1/senders/" + strings.Repeat("9", 40), "application/json", `{"rate":20}`, "", 400, CodeInvalidRequest},
		{"markup for a number", "PUT", "/v1/senders/%3Cscript%3E", "application/json", `{"rate":20}`, "", 400, CodeInvalidRequest},
		{"NUL in a number", "PUT", "/v1/senders/9198%00", "application/json", `{"rate":20}`, "", 400, CodeInvalidRequest},
		{"braces in a number", "PUT", "/v1/senders/%7B919876543210%7D", "application/json", `{"rate":20}`, "", 400, CodeInvalidRequest},
		{"bad number on delete", "DELETE", "/v1/senders/x", "", "", "", 400, CodeInvalidRequest},
		{"body over the limit", "PUT", path, "application/json", `{"rate":20,"burst":` + strings.Repeat(" ", 2<<10) + `3}`, "", 413, CodeBodyTooLarge},
		{"form body", "PUT", path, "application/x-www-form-urlencoded", "rate=20", "", 415, CodeUnsupportedMediaType},
		{"no content type", "PUT", path, "", `{"rate":20}`, "", 415, CodeUnsupportedMediaType},
		{"list without token", "GET", "/v1/senders", "", "", "-", 401, CodeUnauthorized},
		{"set without token", "PUT", path, "application/json", `{"rate":20}`, "-", 401, CodeUnauthorized},
		{"set with a wrong token", "PUT", path, "application/json", `{"rate":20}`, "Bearer wrong-token-0123456789", 401, CodeUnauthorized},
		{"delete without token", "DELETE", path, "", "", "-", 401, CodeUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth := []string{}
			if tc.auth == "-" {
				auth = []string{""}
			} else if tc.auth != "" {
				auth = []string{tc.auth}
			}
			r := e.do(tc.method, tc.path, tc.ctype, strings.NewReader(tc.body), auth...)
			if r.code != tc.status {
				t.Fatalf("status = %d, want %d; body %s", r.code, tc.status, r.body)
			}
			if p := r.problem(t); p.Code != tc.code {
				t.Errorf("code = %q, want %q (detail %q)", p.Code, tc.code, p.Detail)
			}
		})
	}
	// Nothing refused was stored.
	if rates, err := store.New(e.rs.Client(t), testQueue, time.Hour).SenderRates(context.Background()); err != nil || len(rates) != 0 {
		t.Errorf("rates stored after refused requests: %v %v", rates, err)
	}
}

func TestSendersRedisDownIs503(t *testing.T) {
	e := setup(t)
	e.rs.Stop()
	for _, tc := range []struct{ method, body string }{{"GET", ""}, {"PUT", `{"rate":20}`}, {"DELETE", ""}} {
		path := "/v1/senders/+919876543210"
		if tc.method == "GET" {
			path = "/v1/senders"
		}
		r := e.do(tc.method, path, "application/json", strings.NewReader(tc.body))
		if r.code != 503 {
			t.Errorf("%s %s with Redis down = %d %s, want 503", tc.method, tc.body, r.code, r.body)
			continue
		}
		if p := r.problem(t); p.Code != CodeRedisUnavailable {
			t.Errorf("%s: code %q, want %q", tc.method, p.Code, CodeRedisUnavailable)
		}
	}
	e.rs.Restart(t)
	if r := e.do("PUT", "/v1/senders/+919876543210", "application/json", strings.NewReader(`{"rate":20}`)); r.code != 200 {
		t.Errorf("PUT after restart = %d %s", r.code, r.body)
	}
}
