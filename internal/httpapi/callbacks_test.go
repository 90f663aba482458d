package httpapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
)

// callback is a documented Kaleyra status callback for one message.
func callback(id, status string, code int) string {
	errs := ""
	if code != 0 {
		errs = fmt.Sprintf(`,"errors":[{"code":%d,"title":"t","message":"m","error_data":{"details":"d"}}]`, code)
	}
	return fmt.Sprintf(`{"meta_object":{"field":"messages","value":{"messaging_product":"whatsapp",
"metadata":{"display_phone_number":"919000000001","phone_number_id":"1"},
"statuses":[{"id":%q,"status":%q,"timestamp":"1715000000","recipient_id":"919812345601"%s}]}},
"extra_info":{"message_id":%q,"ref":"r"},"status":%q,"message_id":%q}`, id, status, errs, id, status, id)
}

// sentOne records one accepted message of campaign c with message id mid, as a worker does.
func (e *env) sentOne(c, to, mid string) (scope, taskID string) {
	e.t.Helper()
	l := store.New(e.rs.Client(e.t), testQueue, time.Hour)
	scope = lane(c)
	taskID = c + ":919000000001:" + strings.TrimPrefix(to, "+")
	ctx := context.Background()
	if err := l.DeclareLane(ctx, store.Lane{Name: scope, Campaign: c, Sender: "919000000001", Priority: store.PriorityNormal}, false); err != nil {
		e.t.Fatal(err)
	}
	if err := l.SentMessage(ctx, scope, taskID, mid, []byte(`{"messages":[{"id":"`+mid+`"}]}`)); err != nil {
		e.t.Fatal(err)
	}
	// What asynq's ack does next: the task joins the lane's completed set.
	if err := e.rs.Client(e.t).ZAdd(ctx, store.CompletedKey(scope), redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: taskID}).Err(); err != nil {
		e.t.Fatal(err)
	}
	return scope, taskID
}

func (e *env) counts(c string) store.Counts {
	e.t.Helper()
	n, err := store.New(e.rs.Client(e.t), testQueue, time.Hour).Counts(context.Background(), c)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestStatusCallbacksCountOnceWhateverTheirOrder(t *testing.T) {
	e := setup(t)
	e.sentOne("cb", "+919812345601", "wamid.a")
	e.sentOne("cb", "+919812345602", "wamid.b")
	e.sentOne("cb", "+919812345603", "wamid.c")
	post := func(body string, auth ...string) resp {
		t.Helper()
		return e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(body), auth...)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("kaleyra:"+testToken))
	for _, b := range []string{
		callback("wamid.a", "read", 0), callback("wamid.a", "sent", 0), callback("wamid.a", "delivered", 0),
		callback("wamid.b", "failed", 131047), callback("wamid.b", "delivered", 0),
		callback("wamid.c", "not-sent", 0),
	} {
		for _, auth := range []string{"Bearer " + testToken, basic} { // every callback twice
			start := time.Now()
			if r := post(b, auth); r.code != http.StatusOK {
				t.Fatalf("callback = %d %s", r.code, r.body)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("callback answered in %v, want under 100 ms", d)
			}
		}
	}
	c := e.counts("cb")
	if c.Completed != 3 || c.Delivered != 1 || c.Read != 1 || c.Failed != 1 || c.NotSent != 1 || c.FailedCodes["131047"] != 1 {
		t.Fatalf("counts = %+v", c)
	}
	// The campaign route shows them.
	r := e.do("GET", "/v1/campaigns/cb", "", nil)
	for _, want := range []string{`"delivered":1`, `"read":1`, `"failed":1`, `"not_sent":1`, `"failed_by_code":{"131047":1}`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("GET /v1/campaigns/cb lacks %s: %s", want, r.body)
		}
	}

	// An unknown id is answered 200 and counted unmatched, once.
	for range 2 {
		if r := post(callback("wamid.nobody", "delivered", 0)); r.code != 200 || !strings.Contains(string(r.body), `"parked":1`) {
			t.Fatalf("unknown id: %d %s", r.code, r.body)
		}
	}
	if n, _ := store.New(e.rs.Client(t), testQueue, time.Hour).Unmatched(context.Background()); n != 1 {
		t.Errorf("unmatched = %d, want 1", n)
	}
	// A callback before the worker's record counts once both arrive.
	if r := post(callback("wamid.early", "delivered", 0)); r.code != 200 {
		t.Fatalf("early: %d", r.code)
	}
	e.sentOne("cb", "+919812345604", "wamid.early")
	if c := e.counts("cb"); c.Delivered != 2 {
		t.Errorf("after the early callback's message was recorded: %+v", c)
	}
}

func TestStatusCallbackRefusesBadAuthAndBadBodies(t *testing.T) {
	e := setup(t)
	e.sentOne("cb", "+919812345601", "wamid.a")
	post := func(body string, auth ...string) resp {
		t.Helper()
		return e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(body), auth...)
	}
	good := callback("wamid.a", "delivered", 0)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:wrong")), "Basic !!!", testToken} {
		if r := post(good, auth); r.code != http.StatusUnauthorized || r.problem(t).Code != CodeUnauthorized {
			t.Errorf("auth %q: %d %s", auth, r.code, r.body)
		}
	}
	bad := map[string]string{
		"empty":            ``,
		"not json":         `delivered`,
		"truncated":        good[:len(good)/2],
		"two values":       good + good,
		"array":            `[]`,
		"no status":        `{"meta_object":{"value":{"statuses":[]}}}`,
		"unknown status":   strings.Replace(good, `"status":"delivered"`, `"status":"exploded"`, 1),
		"id with braces":   callback("wamid.{x}", "delivered", 0),
		"id with space":    callback("wamid a", "delivered", 0),
		"id too long":      callback(strings.Repeat("w", store.MaxMessageID+1), "delivered", 0),
		"empty id":         callback("", "delivered", 0),
		"bad timestamp":    strings.Replace(good, `"1715000000"`, `"yesterday"`, 1),
		"code not numeric": strings.Replace(callback("wamid.a", "failed", 1), `"code":1`, `"code":"1|2"`, 1),
		"statuses object":  `{"meta_object":{"value":{"statuses":{"id":"wamid.a"}}}}`,
		"deep nesting":     strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
		"too many":         `{"meta_object":{"value":{"statuses":[` + strings.Repeat(`{"id":"wamid.a","status":"sent"},`, MaxCallbackStatuses) + `{"id":"wamid.a","status":"sent"}]}}}`,
	}
	for name, body := range bad {
		if r := post(body); r.code != http.StatusBadRequest || r.problem(t).Code != CodeBadCallback {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	if r := post(`{"x":"` + strings.Repeat("a", MaxCallbackBytes) + `"}`); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", r.code)
	}
	if c := e.counts("cb"); c.Delivered != 0 || c.Failed != 0 {
		t.Errorf("a refused callback was recorded: %+v", c)
	}
	if n, _ := store.New(e.rs.Client(t), testQueue, time.Hour).Unmatched(context.Background()); n != 0 {
		t.Errorf("a refused callback was parked: %d", n)
	}
}

func TestStatusCallbackWithRedisDownAnswers503AndTheRetryCountsOnce(t *testing.T) {
	e := setupWith(t, redistest.Options{AOF: true})
	e.sentOne("cb", "+919812345601", "wamid.a")
	e.rs.Stop()
	r := e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(callback("wamid.a", "failed", 131026)))
	if r.code != http.StatusServiceUnavailable || r.problem(t).Code != CodeRedisUnavailable {
		t.Fatalf("Redis down: %d %s", r.code, r.body)
	}
	e.rs.Restart(t)
	testkit.Eventually(t, 10*time.Second, "the retried callback to be recorded", func() bool {
		return e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(callback("wamid.a", "failed", 131026))).code == 200
	})
	e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(callback("wamid.a", "failed", 131026)))
	if c := e.counts("cb"); c.Failed != 1 || c.FailedCodes["131026"] != 1 {
		t.Errorf("counts = %+v", c)
	}
}

func FuzzParseCallback(f *testing.F) {
	f.Add(callback("wamid.a", "failed", 131047))
	f.Add(`{"status":"read","message_id":"x"}`)
	f.Fuzz(func(t *testing.T, body string) {
		ups, err := parseCallback([]byte(body))
		if err != nil {
			return
		}
		for _, u := range ups {
			if !store.ValidMessageID(u.MessageID) || strings.Contains(u.Code, "|") {
				t.Fatalf("parseCallback let %+v through", u)
			}
		}
	})
}

// suppression is number's source on the suppression list, or "" when it is not on it.
func (e *env) suppression(number string) string {
	e.t.Helper()
	src := ""
	err := store.New(e.rs.Client(e.t), testQueue, time.Hour).EachSuppressed(context.Background(), func(s store.Suppression) error {
		if s.Number == number {
			src = s.Source
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return src
}

func (e *env) postCallback(body string) resp {
	e.t.Helper()
	r := e.do("POST", "/v1/kaleyra/status", "application/json", strings.NewReader(body))
	if r.code != http.StatusOK {
		e.t.Fatalf("callback: %d %s", r.code, r.body)
	}
	return r
}

// A failed callback that arrives before the worker records its message id is parked; when the
// worker records it, a code of WABULK_SUPPRESS_ON suppresses the number as a direct one does.
func TestParkedFailedCallbackSuppressesWhenItsMessageIsRecorded(t *testing.T) {
	e := setup(t, func(c *Config) { c.SuppressOn = []string{"131026"} })
	if r := e.postCallback(callback("wamid.early", "failed", 131026)); !strings.Contains(string(r.body), `"parked":1`) {
		t.Fatalf("early callback not parked: %s", r.body)
	}
	if src := e.suppression("+919812345601"); src != "" {
		t.Fatalf("suppressed before its message was recorded: %q", src)
	}
	e.sentOne("sx", "+919812345601", "wamid.early")
	if src := e.suppression("+919812345601"); src != "failed 131026" {
		t.Errorf("after the worker recorded the message: source %q, want \"failed 131026\"", src)
	}
	// A parked failure with a code not on the list does not.
	e.postCallback(callback("wamid.early2", "failed", 131050))
	e.sentOne("sx", "+919812345602", "wamid.early2")
	if src := e.suppression("+919812345602"); src != "" {
		t.Errorf("parked 131050 (not in WABULK_SUPPRESS_ON) suppressed: %q", src)
	}
}

// A callback the ledger does not apply (a later failure of a failed message, a failure after
// delivered, a duplicate) leaves the suppression list as it is.
func TestCallbackTheLedgerDoesNotApplyLeavesTheSuppressionList(t *testing.T) {
	e := setup(t, func(c *Config) { c.SuppressOn = []string{"131026"} })
	// Failed 131047 first: the report keeps 131047, and the later 131026 suppresses nothing.
	e.sentOne("sx", "+919812345601", "wamid.a")
	e.postCallback(callback("wamid.a", "failed", 131047))
	e.postCallback(callback("wamid.a", "failed", 131026))
	if c := e.counts("sx"); c.Failed != 1 || c.FailedCodes["131047"] != 1 || c.FailedCodes["131026"] != 0 {
		t.Fatalf("counts %+v", c)
	}
	if src := e.suppression("+919812345601"); src != "" {
		t.Errorf("a failure the ledger did not apply suppressed the number: %q", src)
	}
	// Delivered, then failed: the failure is not applied.
	e.sentOne("sx", "+919812345602", "wamid.b")
	e.postCallback(callback("wamid.b", "delivered", 0))
	e.postCallback(callback("wamid.b", "failed", 131026))
	if src := e.suppression("+919812345602"); src != "" {
		t.Errorf("a failure after delivered suppressed the number: %q", src)
	}
	// Applied once, it suppresses; taken off the list, a duplicate does not put it back.
	e.sentOne("sx", "+919812345603", "wamid.c")
	e.postCallback(callback("wamid.c", "failed", 131026))
	if src := e.suppression("+919812345603"); src != "failed 131026" {
		t.Fatalf("applied failure: source %q", src)
	}
	if r := e.do("DELETE", "/v1/suppressions/+919812345603", "", nil); r.code != 200 {
		t.Fatalf("rm: %d %s", r.code, r.body)
	}
	e.postCallback(callback("wamid.c", "failed", 131026))
	if src := e.suppression("+919812345603"); src != "" {
		t.Errorf("a duplicate callback put the number back: %q", src)
	}
}

// 131047 (outside the 24-hour window) never suppresses, even listed in WABULK_SUPPRESS_ON: the
// number can be reached again once it writes to the business.
func TestCode131047NeverSuppresses(t *testing.T) {
	e := setup(t, func(c *Config) { c.SuppressOn = []string{"131026", "131047"} })
	e.sentOne("sx", "+919812345601", "wamid.a")
	e.postCallback(callback("wamid.a", "failed", 131047))
	e.postCallback(callback("wamid.early", "failed", 131047))
	e.sentOne("sx", "+919812345602", "wamid.early")
	for _, n := range []string{"+919812345601", "+919812345602"} {
		if src := e.suppression(n); src != "" {
			t.Errorf("%s suppressed by 131047: %q", n, src)
		}
	}
	if c := e.counts("sx"); c.FailedCodes["131047"] != 2 {
		t.Errorf("counts %+v", c)
	}
}
