package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

const (
	testToken = "test-token-0123456789abcdef"
	testQueue = "whatsapp"
	link      = "https://example.com/a.png"
)

// seen records every (method, route pattern, status) the handler tests produced, for the check
// against the OpenAPI document in TestMain.
var seen sync.Map

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the Redis-down tests cause many on purpose.
	redis.SetLogger(quiet{})
	code := m.Run()
	// Only a full run has seen every status; a -run filter would report false gaps.
	if f := flag.Lookup("test.run"); code == 0 && f != nil && f.Value.String() == "" && !testing.Short() {
		if err := checkStatusesDocumented(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: OpenAPI document and handler tests disagree:\n"+err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

type env struct {
	t    *testing.T
	rs   *redistest.Server
	srv  *Server
	h    http.Handler
	insp *asynq.Inspector
}

func setup(t *testing.T, change ...func(*Config)) *env {
	t.Helper()
	return setupWith(t, redistest.Options{}, change...)
}

// setupWith is setup on a redis-server started with ro.
func setupWith(t *testing.T, ro redistest.Options, change ...func(*Config)) *env {
	t.Helper()
	rs := redistest.StartWith(t, ro)
	cfg := Config{Redis: rs.ConnOpt(t), Producer: producer.Config{Queue: testQueue, Retention: time.Hour, DefaultFrom: testkit.Sender},
		Tokens: []config.Secret{testToken}, MaxBodyBytes: 64 << 10, MaxRecipients: 50}
	for _, c := range change {
		c(&cfg)
	}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.observe = func(method, pattern string, status int) {
		if pattern != "" && pattern != "/" {
			seen.Store(fmt.Sprintf("%s %s %d", method, pattern, status), true)
		}
	}
	insp := asynq.NewInspector(rs.ConnOpt(t))
	t.Cleanup(func() { insp.Close() })
	return &env{t: t, rs: rs, srv: srv, h: srv.Handler(), insp: insp}
}

// lane is the asynq queue the API puts campaign's jobs from the default sender in: its lane in
// the namespace testQueue.
func lane(campaign string) string {
	return store.New(nil, testQueue, time.Hour).LaneName(campaign, testkit.Sender)
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) problem(t *testing.T) Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, r.body)
	}
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != r.code || p.Code == "" || p.Type != problemType(p.Code) || p.Title == "" {
		t.Errorf("problem %+v does not match its status %d or lacks code/type/title", p, r.code)
	}
	if strings.Contains(string(r.body), "goroutine ") {
		t.Errorf("problem body holds a stack trace: %s", r.body)
	}
	return p
}

func (r resp) accepted(t *testing.T) Accepted {
	t.Helper()
	if r.code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202; body %s", r.code, r.body)
	}
	var a Accepted
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return a
}

// do sends a request with the bearer token unless auth says otherwise ("" = none).
func (e *env) do(method, path, ctype string, body io.Reader, auth ...string) resp {
	e.t.Helper()
	req := httptest.NewRequest(method, path, body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	a := "Bearer " + testToken
	if len(auth) > 0 {
		a = auth[0]
	}
	if a != "" {
		req.Header.Set("Authorization", a)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return resp{rec.Code, rec.Result().Header, rec.Body.Bytes()}
}

func (e *env) postJSON(path string, v any) resp {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do("POST", path, "application/json", bytes.NewReader(b))
}

func statuses(a Accepted) string {
	var s []string
	for _, o := range a.Outcomes {
		s = append(s, fmt.Sprintf("%d:%s", o.Index, o.Status))
	}
	return strings.Join(s, " ")
}

func TestPostCampaignEnqueuesValidRecipientsAndRejectsTheRest(t *testing.T) {
	e := setup(t)
	req := CampaignRequest{Campaign: "spring", Defaults: job.Fields{Type: "image", MediaLink: link, Ref1: "mkt"},
		Recipients: []job.Fields{{To: "+919812345601"}, {To: "12"}, {To: "+919812345602, +919812345603", Ref: "two"}, {To: "+919812345601"}}}
	a := e.postJSON("/v1/campaigns", req).accepted(t)
	if a.Campaign != "spring" || a.Enqueued != 3 || a.Rejected != 1 || a.Duplicates != 1 || a.NotAttempted != 0 {
		t.Errorf("summary = %+v, want 3 enqueued, 1 rejected, 1 duplicate (the repeat)", a)
	}
	if got, want := statuses(a), "0:enqueued 1:rejected 2:enqueued 2:enqueued 3:duplicate"; got != want &&
		got != "0:duplicate 1:rejected 2:enqueued 2:enqueued 3:enqueued" {
		t.Errorf("outcomes = %s, want %s (sorted by index)", got, want)
	}
	if r := a.Outcomes[1]; r.Reason == "" || r.TaskID != "" {
		t.Errorf("rejected outcome %+v: want a reason and no task", r)
	}
	ti, err := e.insp.GetTaskInfo(lane("spring"), "spring:919000000001:919812345602")
	if err != nil {
		t.Fatalf("task of recipient 2: %v", err)
	}
	p, err := job.Decode(ti.Payload)
	if err != nil || p.Ref != "two" || p.Ref1 != "mkt" || p.From != testkit.Sender {
		t.Errorf("payload = %+v (%v): want the row's ref over the defaults and the default sender", p, err)
	}

	// The same request again enqueues nothing: the idempotency of `wabulk enqueue`.
	again := e.postJSON("/v1/campaigns", req).accepted(t)
	if again.Enqueued != 0 || again.Duplicates != 4 || again.Rejected != 1 {
		t.Errorf("re-post summary = %+v, want 0 enqueued, 4 duplicates", again)
	}
	if e := e.do("POST", "/v1/campaigns?outcomes=rejected", "application/json", strings.NewReader(`{"campaign":"spring","recipients":[{"to":"+919812345604","type":"image","media_link":"`+link+`"},{"to":"x"}]}`)).accepted(t); statuses(e) != "1:rejected" || e.Enqueued != 1 {
		t.Errorf("outcomes=rejected: %s %+v, want only the rejected one listed", statuses(e), e.Summary)
	}
}

func TestPostCampaignStreams(t *testing.T) {
	e := setup(t)
	csv := "to,ref\n+919812345601,a\n\"+919812345602,+919812345603\",b\nnot-a-number,c\n"
	a := e.do("POST", "/v1/campaigns?campaign=csv1&type=document&media_id=doc-1&filename=f.pdf", "text/csv; charset=utf-8", strings.NewReader(csv)).accepted(t)
	if a.Enqueued != 3 || a.Rejected != 1 || statuses(a) != "0:enqueued 1:enqueued 1:enqueued 2:rejected" {
		t.Errorf("CSV: %+v %s", a.Summary, statuses(a))
	}
	if a.Outcomes[3].Line != 4 {
		t.Errorf("rejected CSV row reports line %d, want 4 (header is line 1)", a.Outcomes[3].Line)
	}
	nd := `{"to":"+919812345601"}` + "\n" + `{"to":"+919812345602","caption":"hi"}` + "\n"
	b := e.do("POST", "/v1/campaigns?campaign=nd1&type=image&media_link="+link, "application/x-ndjson", strings.NewReader(nd)).accepted(t)
	if b.Enqueued != 2 {
		t.Errorf("NDJSON: %+v %s", b.Summary, statuses(b))
	}
}

func TestPostMessage(t *testing.T) {
	e := setup(t)
	msg := map[string]string{"to": "919812345601", "type": "video", "media_link": link, "ref": "r1"}
	a := e.postJSON("/v1/messages", msg).accepted(t)
	if a.Enqueued != 1 || !strings.HasPrefix(a.Campaign, "msg-") || a.Outcomes[0].To != "+919812345601" {
		t.Errorf("first post: %+v", a)
	}
	// A client's retry of the same message is a duplicate; another message to the number is not.
	if b := e.postJSON("/v1/messages", msg).accepted(t); b.Duplicates != 1 || b.Campaign != a.Campaign {
		t.Errorf("retry: %+v, want a duplicate in campaign %s", b, a.Campaign)
	}
	msg["media_link"] = "https://example.com/b.png"
	if c := e.postJSON("/v1/messages", msg).accepted(t); c.Enqueued != 1 || c.Campaign == a.Campaign {
		t.Errorf("another message: %+v, want enqueued in a campaign of its own", c)
	}
	msg["campaign"] = "given"
	if d := e.postJSON("/v1/messages", msg).accepted(t); d.Campaign != "given" || d.Enqueued != 1 {
		t.Errorf("named campaign: %+v", d)
	}
	if r := e.postJSON("/v1/messages", map[string]string{"to": "+919812345601", "type": "image"}).accepted(t); r.Rejected != 1 || !strings.Contains(r.Outcomes[0].Reason, "media_id or media_link") {
		t.Errorf("invalid message: %+v, want rejected with the reason", r)
	}
}

func TestErrorsAreProblemsWithStableCodes(t *testing.T) {
	e := setup(t)
	valid := `{"campaign":"c","recipients":[{"to":"+919812345601","type":"image","media_link":"` + link + `"}]}`
	many := `{"campaign":"c","defaults":{"type":"image","media_link":"` + link + `"},"recipients":[` + strings.Repeat(`{"to":"+919812345601"},`, 50) + `{"to":"+919812345601"}]}`
	manyCSV := "to\n" + strings.Repeat("+919812345601\n", 51)
	for _, tc := range []struct {
		name, method, path, ctype, body, auth string
		status                                int
		code                                  string
	}{
		{"malformed JSON", "POST", "/v1/campaigns", "application/json", `{"campaign":`, "", 400, CodeBadJSON},
		{"empty body", "POST", "/v1/campaigns", "application/json", ``, "", 400, CodeBadJSON},
		{"unknown key", "POST", "/v1/campaigns", "application/json", `{"campaign":"c","recipients":[{"to":"+919812345601","media_url":"x"}]}`, "", 400, CodeBadJSON},
		{"number where a string goes", "POST", "/v1/campaigns", "application/json", `{"campaign":"c","recipients":[{"to":919812345601}]}`, "", 400, CodeBadJSON},
		{"two JSON values", "POST", "/v1/campaigns", "application/json", valid + valid, "", 400, CodeBadJSON},
		{"bad campaign id", "POST", "/v1/campaigns", "application/json", `{"campaign":"a b","recipients":[{"to":"1"}]}`, "", 400, CodeInvalidRequest},
		{"no recipients", "POST", "/v1/campaigns", "application/json", `{"campaign":"c","recipients":[]}`, "", 400, CodeInvalidRequest},
		{"stream without campaign", "POST", "/v1/campaigns", "text/csv", "to\n+919812345601\n", "", 400, CodeInvalidRequest},
		{"stream with unknown parameter", "POST", "/v1/campaigns?campaign=c&media_url=x", "text/csv", "to\n", "", 400, CodeInvalidRequest},
		{"CSV without a to column", "POST", "/v1/campaigns?campaign=c", "text/csv", "phone\n+919812345601\n", "", 400, CodeInvalidRequest},
		{"bad outcomes", "POST", "/v1/campaigns?outcomes=some", "application/json", valid, "", 400, CodeInvalidRequest},
		{"message: malformed JSON", "POST", "/v1/messages", "application/json", `{"to":`, "", 400, CodeBadJSON},
		{"message: bad campaign id", "POST", "/v1/messages", "application/json", `{"campaign":"-x","to":"+919812345601"}`, "", 400, CodeInvalidRequest},
		{"no token", "POST", "/v1/campaigns", "application/json", valid, "-", 401, CodeUnauthorized},
		{"wrong token", "POST", "/v1/campaigns", "application/json", valid, "Bearer wrong-token-0123456789", 401, CodeUnauthorized},
		{"token as Basic on the API", "POST", "/v1/messages", "application/json", valid, "Basic eDp0ZXN0LXRva2VuLTAxMjM0NTY3ODlhYmNkZWY=", 401, CodeUnauthorized},
		{"status without token", "GET", "/v1/campaigns/c", "", "", "-", 401, CodeUnauthorized},
		{"list without token", "GET", "/v1/campaigns", "", "", "-", 401, CodeUnauthorized},
		{"pause without token", "POST", "/v1/campaigns/c/pause", "", "", "-", 401, CodeUnauthorized},
		{"resume without token", "POST", "/v1/campaigns/c/resume", "", "", "-", 401, CodeUnauthorized},
		{"cancel without token", "POST", "/v1/campaigns/c/cancel", "", "", "-", 401, CodeUnauthorized},
		{"dead without token", "GET", "/v1/campaigns/c/dead", "", "", "-", 401, CodeUnauthorized},
		{"openapi without token", "GET", "/v1/openapi.json", "", "", "-", 401, CodeUnauthorized},
		{"metrics without token", "GET", "/metrics", "", "", "-", 401, CodeUnauthorized},
		{"body over the limit", "POST", "/v1/campaigns", "application/json", `{"campaign":"c","recipients":[{"to":"` + strings.Repeat("1", 70<<10) + `"}]}`, "", 413, CodeBodyTooLarge},
		{"message body over the limit", "POST", "/v1/messages", "application/json", `{"to":"` + strings.Repeat("1", 70<<10) + `"}`, "", 413, CodeBodyTooLarge},
		{"too many recipients", "POST", "/v1/campaigns", "application/json", many, "", 413, CodeTooManyRecipients},
		{"too many numbers in one message", "POST", "/v1/messages", "application/json", `{"to":"` + strings.Repeat("+919812345601,", 51) + `"}`, "", 413, CodeTooManyRecipients},
		{"too many streamed recipients", "POST", "/v1/campaigns?campaign=c&type=image&media_link=" + link, "text/csv", manyCSV, "", 413, CodeTooManyRecipients},
		{"streamed body over the limit", "POST", "/v1/campaigns?campaign=c&type=image&media_link=" + link, "text/csv", "to\n+919812345601\n" + strings.Repeat("1", 70<<10) + "\n", "", 413, CodeBodyTooLarge},
		{"form body", "POST", "/v1/campaigns", "application/x-www-form-urlencoded", "a=b", "", 415, CodeUnsupportedMediaType},
		{"no content type", "POST", "/v1/campaigns", "", valid, "", 415, CodeUnsupportedMediaType},
		{"CSV to messages", "POST", "/v1/messages", "text/csv", "to\n", "", 415, CodeUnsupportedMediaType},
		{"unknown campaign", "GET", "/v1/campaigns/nope", "", "", "", 404, CodeUnknownCampaign},
		{"dead of unknown campaign", "GET", "/v1/campaigns/nope/dead", "", "", "", 404, CodeUnknownCampaign},
		{"bad campaign id in path", "GET", "/v1/campaigns/-x", "", "", "", 400, CodeInvalidRequest},
		{"dead: bad campaign id", "GET", "/v1/campaigns/-x/dead", "", "", "", 400, CodeInvalidRequest},
		{"dead: bad limit", "GET", "/v1/campaigns/c/dead?limit=0", "", "", "", 400, CodeInvalidRequest},
		{"unknown path", "GET", "/v2/nothing", "", "", "", 404, CodeNotFound},
		{"monitor write while read-only", "POST", "/monitor/api/queues/whatsapp:pause", "", "", "Basic " + basic(testToken), 403, CodeMonitorReadOnly},
		{"monitor delete while read-only", "DELETE", "/monitor/api/queues/whatsapp", "", "", "Basic " + basic(testToken), 403, CodeMonitorReadOnly},
		{"monitor without login", "GET", "/monitor/", "", "", "-", 401, CodeUnauthorized},
		{"monitor write without login", "POST", "/monitor/api/queues/whatsapp:pause", "", "", "-", 401, CodeUnauthorized},
		{"monitor delete without login", "DELETE", "/monitor/api/queues/whatsapp", "", "", "-", 401, CodeUnauthorized},
		{"monitor with a wrong password", "GET", "/monitor/", "", "", "Basic " + basic("wrong-token-0123456789"), 401, CodeUnauthorized},
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
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	// Summed over the namespace: every lane.
	if n, err := e.srv.ops.QueueCounts(""); err != nil || n.Pending > 50 {
		t.Errorf("%d jobs pending (%v) after requests refused for their size, want at most the 50 before the stream limit", n.Pending, err)
	}
}

func basic(pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("ops", pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestCampaignStatusAndDeadLetters(t *testing.T) {
	e := setup(t)
	e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "st", Defaults: job.Fields{Type: "image", MediaLink: link},
		Recipients: []job.Fields{{To: "+919812345601"}, {To: "+919812345602"}}}).accepted(t)
	// A dead letter as the worker records it (the worker's own tests cover how it gets there).
	p, _ := job.New("st", job.Fields{To: "+919812345602", Type: "image", MediaLink: link, From: testkit.Sender})
	l := store.New(e.rs.Client(t), testQueue, time.Hour)
	if err := l.Dead(context.Background(), l.LaneName("st", testkit.Sender), store.DeadLetter{TaskID: job.TaskID(p), Code: "E110", Status: 400,
		Message: "low balance", Time: time.Now(), Attempt: 1, Payload: p}); err != nil {
		t.Fatal(err)
	}

	r := e.do("GET", "/v1/campaigns/st", "", nil)
	var st CampaignStatus
	if r.code != 200 || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("GET status = %d %s", r.code, r.body)
	}
	// The queue counts are the campaign's lanes summed, named <namespace>:<campaign>.
	if st.Campaign.Campaign != "st" || st.Campaign.Enqueued != 2 || st.Campaign.Dead != 1 || st.Queue.Queue != testQueue+":st" || st.Queue.Pending != 2 ||
		st.Campaign.State != store.StateRunning {
		t.Errorf("status = %+v", st)
	}

	r = e.do("GET", "/v1/campaigns/st/dead?code=E110&limit=10", "", nil)
	var dl DeadList
	if r.code != 200 || json.Unmarshal(r.body, &dl) != nil {
		t.Fatalf("GET dead = %d %s", r.code, r.body)
	}
	if len(dl.Dead) != 1 || dl.Dead[0].Code != "E110" || dl.Dead[0].To != "+91******5602" || dl.Limit != 10 {
		t.Errorf("dead = %+v, want the E110 record with the number masked", dl)
	}
	if r := e.do("GET", "/v1/campaigns/st/dead?code=WA400", "", nil); r.code != 200 || !strings.Contains(string(r.body), `"dead":[]`) {
		t.Errorf("no match: %d %s, want an empty list", r.code, r.body)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	e := setup(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.do("GET", p, "", nil, ""); r.code != 200 {
			t.Errorf("GET %s without a token = %d, want 200", p, r.code)
		}
	}
	e.do("GET", "/v1/campaigns/nope", "", nil)
	r := e.do("GET", "/metrics", "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `wabulk_http_requests_total{code="404",method="GET",route="GET /v1/campaigns/{id}"} 1`) {
		t.Errorf("metrics = %d, want the request counted by route pattern:\n%s", r.code, r.body)
	}
	if r := e.do("GET", "/v1/openapi.json", "", nil); r.code != 200 || !json.Valid(r.body) {
		t.Errorf("GET /v1/openapi.json = %d", r.code)
	}
}

func TestMonitor(t *testing.T) {
	e := setup(t)
	e.postJSON("/v1/messages", map[string]string{"campaign": "m", "to": "+919812345601", "type": "image", "media_link": link}).accepted(t)
	auth := "Basic " + basic(testToken)
	if r := e.do("GET", "/monitor/", "", nil, auth); r.code != 200 || !strings.Contains(string(r.body), "<html") {
		t.Fatalf("GET /monitor/ = %d %.200s", r.code, r.body)
	}
	r := e.do("GET", "/monitor/api/queues/"+lane("m")+"/pending_tasks", "", nil, auth)
	if r.code != 200 || !strings.Contains(string(r.body), `\"campaign\": \"m\"`) {
		t.Errorf("pending tasks = %d %s, want the payload as indented JSON", r.code, r.body)
	}
	// A script may use the bearer token on asynqmon's JSON API too.
	if r := e.do("GET", "/monitor/api/queues", "", nil); r.code != 200 {
		t.Errorf("GET /monitor/api/queues with a bearer token = %d", r.code)
	}

	w := setup(t, func(c *Config) { c.MonitorWrite = true })
	w.postJSON("/v1/messages", map[string]string{"campaign": "m", "to": "+919812345601", "type": "image", "media_link": link}).accepted(t)
	if r := w.do("POST", "/monitor/api/queues/"+lane("m")+":pause", "", nil, auth); r.code != 204 {
		t.Errorf("pause with --monitor-write = %d %s", r.code, r.body)
	}
	if q, _ := w.insp.GetQueueInfo(lane("m")); q == nil || !q.Paused {
		t.Errorf("queue not paused")
	}
	if r := w.do("DELETE", "/monitor/api/queues/"+lane("m")+"/pending_tasks/m:919000000001:919812345601", "", nil, auth); r.code != 204 {
		t.Errorf("delete with --monitor-write = %d %s", r.code, r.body)
	}
}

func TestRedisDownIs503AndServeRecovers(t *testing.T) {
	e := setup(t)
	req := CampaignRequest{Campaign: "down", Defaults: job.Fields{Type: "image", MediaLink: link}, Recipients: []job.Fields{{To: "+919812345601"}, {To: "+919812345602"}}}
	e.rs.Stop()
	r := e.postJSON("/v1/campaigns", req)
	if r.code != 503 {
		t.Fatalf("POST with Redis down = %d %s", r.code, r.body)
	}
	p := r.problem(t)
	if p.Code != CodeRedisUnavailable || p.Summary == nil || p.Summary.Enqueued != 0 {
		t.Errorf("problem = %+v, want redis_unavailable with a summary of nothing enqueued", p)
	}
	m := e.postJSON("/v1/messages", map[string]string{"campaign": "down", "to": "+919812345601", "type": "image", "media_link": link})
	if m.code != 503 || m.problem(t).Summary.NotAttempted != 1 {
		t.Errorf("POST message with Redis down = %d %s, want 503 with not_attempted 1", m.code, m.body)
	}
	for _, path := range []string{"/v1/campaigns/down/pause", "/v1/campaigns/down/resume", "/v1/campaigns/down/cancel"} {
		if r := e.do("POST", path, "", nil); r.code != 503 || r.problem(t).Code != CodeRedisUnavailable {
			t.Errorf("POST %s with Redis down = %d, want 503 redis_unavailable", path, r.code)
		}
	}
	for _, path := range []string{"/v1/campaigns", "/v1/campaigns/down", "/v1/campaigns/down/dead", "/readyz"} {
		if r := e.do("GET", path, "", nil); r.code != 503 {
			t.Errorf("GET %s with Redis down = %d, want 503", path, r.code)
		} else if path != "/readyz" {
			r.problem(t)
		}
	}
	e.rs.Restart(t)
	// go-redis backs off redialling after a run of failed dials (about a second): serve is back
	// once its readiness probe says so.
	testkit.Eventually(t, 10*time.Second, "serve's /readyz after the Redis restart", func() bool {
		return e.do("GET", "/readyz", "", nil).code == 200
	})
	if a := e.postJSON("/v1/campaigns", req).accepted(t); a.Enqueued != 2 {
		t.Errorf("after restart: %+v", a.Summary)
	}
	if r := e.do("GET", "/readyz", "", nil); r.code != 200 {
		t.Errorf("readyz after restart = %d", r.code)
	}
}

// TestRedisDyingMidStreamReportsWhatWasEnqueued: the first rows of a streamed campaign go in,
// Redis dies, the rest cannot: the answer is 503 with exactly that, never a 202.
func TestRedisDyingMidStreamReportsWhatWasEnqueued(t *testing.T) {
	e := setup(t)
	pr, pw := io.Pipe()
	done := make(chan resp, 1)
	go func() {
		done <- e.do("POST", "/v1/campaigns?campaign=mid&type=image&media_link="+link, "text/csv", pr)
	}()
	fmt.Fprint(pw, "to\n+919812345601\n+919812345602\n+919812345603\n")
	testkit.Eventually(t, 10*time.Second, "the first three rows to be enqueued", func() bool {
		q, _ := e.insp.GetQueueInfo(lane("mid"))
		return q != nil && q.Pending == 3
	})
	e.rs.Stop()
	fmt.Fprint(pw, "+919812345604\n+919812345605\n")
	pw.Close()
	r := <-done
	if r.code != 503 {
		t.Fatalf("status = %d, want 503; body %s", r.code, r.body)
	}
	p := r.problem(t)
	if p.Code != CodeRedisUnavailable || p.Summary.Enqueued != 3 || p.Summary.NotAttempted != 2 || len(p.Outcomes) != 3 || p.Campaign != "mid" {
		t.Errorf("problem = %+v %+v, want 3 enqueued (listed), 2 not attempted", p, p.Summary)
	}
}

func TestServeRefusesAnOpenAPIOffLoopback(t *testing.T) {
	rs := redistest.Start(t)
	if _, err := New(Config{Redis: rs.ConnOpt(t)}, nil); err != ErrNoTokens {
		t.Errorf("New without tokens: %v, want ErrNoTokens", err)
	}
	srv, err := New(Config{Redis: rs.ConnOpt(t), InsecureNoAuth: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, addr := range []string{":0", "0.0.0.0:0", "192.0.2.1:8080"} {
		if err := srv.ListenAndServe(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("ListenAndServe(%q) without tokens: %v, want a refusal naming loopback", addr, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	testkit.Eventually(t, 5*time.Second, "the API to answer on loopback without tokens", func() bool {
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Serve on loopback with --insecure-no-auth: %v", err)
	}
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, ":1": false, "10.0.0.1:1": false, "junk": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%q) = %v", addr, !want)
		}
	}
}

// openAPIDoc is the part of the document the consistency checks read.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct{ Responses map[string]json.RawMessage }
}

func loadDoc(t testing.TB) openAPIDoc {
	var d openAPIDoc
	if err := json.Unmarshal(openAPI, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return d
}

// docOps lists "METHOD path" of every operation in the document.
func (d openAPIDoc) ops() []string {
	var out []string
	for p, methods := range d.Paths {
		for m := range methods {
			out = append(out, strings.ToUpper(m)+" "+p)
		}
	}
	sort.Strings(out)
	return out
}

func TestOpenAPIDocumentMatchesTheMux(t *testing.T) {
	e := setup(t)
	d := loadDoc(t)
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", d.OpenAPI)
	}
	var served []string
	for _, rt := range e.srv.routeTable() {
		served = append(served, rt.method+" "+rt.path)
	}
	served = append(served, "GET /healthz", "GET /readyz", "GET /metrics")
	sort.Strings(served)
	if got := d.ops(); !slices.Equal(got, served) {
		t.Errorf("document operations:\n  %v\nroutes served:\n  %v", got, served)
	}
	// Every documented operation reaches its own route in the mux, not the catch-all.
	for _, op := range served {
		method, path, _ := strings.Cut(op, " ")
		req := httptest.NewRequest(method, strings.ReplaceAll(path, "{id}", "x"), nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if req.Pattern == "" || req.Pattern == "/" {
			t.Errorf("%s reaches pattern %q, want its own route", op, req.Pattern)
		}
	}
}

// checkStatusesDocumented compares the statuses the handler tests saw with the document: every
// status seen is documented for its operation, and every documented status was seen.
func checkStatusesDocumented() error {
	d := openAPIDoc{}
	if err := json.Unmarshal(openAPI, &d); err != nil {
		return err
	}
	documented := map[string]bool{}
	for p, methods := range d.Paths {
		pattern := p
		for m, op := range methods {
			for code := range op.Responses {
				key := strings.ToUpper(m) + " " + pattern + " " + code
				if p != MonitorPath {
					key = strings.ToUpper(m) + " " + strings.ToUpper(m) + " " + pattern + " " + code
				}
				documented[key] = true
			}
		}
	}
	var errs []string
	seen.Range(func(k, _ any) bool {
		if !documented[k.(string)] {
			errs = append(errs, "seen in tests, not documented: "+k.(string))
		}
		return true
	})
	for k := range documented {
		if _, ok := seen.Load(k); !ok {
			errs = append(errs, "documented, never seen in tests: "+k)
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// TestProducerConfigReachesTheJobs: the API enqueues with its Producer settings: a negative
// MaxRetry (WABULK_MAX_RETRY=0) gives jobs without retries, in lanes of the configured namespace.
func TestProducerConfigReachesTheJobs(t *testing.T) {
	rs := redistest.Start(t)
	cfg := Config{Redis: rs.ConnOpt(t), Tokens: []config.Secret{testToken},
		Producer: producer.Config{Queue: "other", MaxRetry: -1, DefaultFrom: testkit.Sender}}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := &env{t: t, rs: rs, srv: srv, h: srv.Handler()}
	a := e.postJSON("/v1/messages", map[string]string{"campaign": "cf", "to": "+919812345601", "type": "image", "media_link": link}).accepted(t)
	insp := asynq.NewInspector(rs.ConnOpt(t))
	defer insp.Close()
	// The task is in its lane of the namespace "other": other:cf:<sender>.
	ln, ok := store.New(nil, "other", time.Hour).LaneOfTask(a.Outcomes[0].TaskID)
	if !ok || !strings.HasPrefix(ln, "other:") {
		t.Fatalf("task %s has lane %q (%v), want one in the namespace other", a.Outcomes[0].TaskID, ln, ok)
	}
	ti, err := insp.GetTaskInfo(ln, a.Outcomes[0].TaskID)
	if err != nil || ti.MaxRetry != 0 {
		t.Errorf("task in queue %s: %v %+v, want MaxRetry 0", ln, err, ti)
	}
}

func TestOversizedHeadersAreRefusedBeforeAnyHandler(t *testing.T) {
	rs := redistest.Start(t)
	srv, err := New(Config{Redis: rs.ConnOpt(t), Tokens: []config.Secret{"header-test-token-0123456789"}, MaxHeaderBytes: 4 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-errc }()
	get := func(extra int) int {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/healthz", nil)
		req.Header.Set("X-Padding", strings.Repeat("a", extra))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(100); got != http.StatusOK {
		t.Fatalf("small header: %d, want 200", got)
	}
	if got := get(64 << 10); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: %d, want 431", got)
	}
}
