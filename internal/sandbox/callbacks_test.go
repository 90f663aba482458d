package sandbox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
)

// receiver records the callbacks it is posted, answering 503 to the first fail of them.
type receiver struct {
	fail    atomic.Int64
	mu      sync.Mutex
	bodies  []map[string]any
	auth    []string
	refused atomic.Int64
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.fail.Add(-1) >= 0 {
		r.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var b map[string]any
	if err := json.NewDecoder(req.Body).Decode(&b); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.mu.Unlock()
}

func TestCallbacksArePostedAsKaleyraDoesAndRetriedUntil200(t *testing.T) {
	rc := &receiver{}
	rc.fail.Store(5)
	hs := httptest.NewServer(rc)
	t.Cleanup(hs.Close)
	s := start(t, sandbox.Config{CallbackURL: hs.URL, CallbackToken: "tok", CallbackFail: 0.5, CallbackDup: 1,
		CallbackMaxDelay: time.Millisecond})
	const n = 40
	for i := range n {
		body := msg(strings.Replace(okFields, "+919876543210", fmt.Sprintf("+9198765432%02d", i), 1))
		if code, _, _ := post(t, s, call{body: body}); code != 200 {
			t.Fatalf("send %d: %d", i, code)
		}
	}
	testkit.Eventually(t, 20*time.Second, "every callback answered 200", func() bool {
		st := s.Stats().Callbacks
		return st.Messages == n && st.Pending == 0
	})
	st := s.Stats().Callbacks
	if st.Retried != 5 || st.Abandoned != 0 || rc.refused.Load() != 5 {
		t.Errorf("stats %+v, refused %d: want the 5 refused posts retried", *st, rc.refused.Load())
	}
	var failed int64
	for _, v := range st.Failed {
		failed += v
	}
	if st.Delivered+failed+st.NotSent != n || failed == 0 || st.Delivered == 0 {
		t.Errorf("outcomes %+v do not add up to %d messages", *st, n)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	// Every message has one callback twice (CallbackDup 1): more posts than distinct statuses.
	if int64(len(rc.bodies)) != st.Posted || st.Posted <= 2*n {
		t.Errorf("posted %d bodies, stats say %d", len(rc.bodies), st.Posted)
	}
	for i, b := range rc.bodies {
		if rc.auth[i] != "Bearer tok" {
			t.Fatalf("Authorization = %q", rc.auth[i])
		}
		mo := b["meta_object"].(map[string]any)["value"].(map[string]any)["statuses"].([]any)[0].(map[string]any)
		if !strings.HasPrefix(mo["id"].(string), "wamid.") || mo["id"] != b["message_id"] || mo["status"] != b["status"] {
			t.Fatalf("body %v", b)
		}
		if mo["status"] == "failed" {
			if _, ok := mo["errors"].([]any)[0].(map[string]any)["code"].(float64); !ok {
				t.Fatalf("failed without a numeric code: %v", b)
			}
		}
	}
}

func TestCallbackConfigIsChecked(t *testing.T) {
	for _, cfg := range []sandbox.Config{
		{CallbackURL: "ftp://x"}, {CallbackURL: "http://x", CallbackFail: 2}, {CallbackURL: "http://x", CallbackFail: 0.8, CallbackNotSent: 0.5},
		{CallbackURL: "http://x", CallbackCodes: []string{"13a"}},
	} {
		if _, err := sandbox.New(cfg); err == nil {
			t.Errorf("New(%+v) took it", cfg)
		}
	}
}
