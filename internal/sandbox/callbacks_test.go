package sandbox_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
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
	s := start(t, sandbox.Config{CallbackURL: hs.URL, CallbackToken: "tok", CallbackFail: new(0.5), CallbackDup: new(1.0),
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
		{CallbackURL: "ftp://x"}, {CallbackURL: "http://x", CallbackFail: new(2.0)}, {CallbackURL: "http://x", CallbackFail: new(0.8), CallbackNotSent: new(0.5)},
		{CallbackURL: "http://x", CallbackRead: new(-1.0)},
		{CallbackURL: "http://x", CallbackCodes: []string{"13a"}},
	} {
		if _, err := sandbox.New(cfg); err == nil {
			t.Errorf("New(%+v) took it", cfg)
		}
	}
}

// outcomes sends one message to each of n recipients, from 8 goroutines (so the sends arrive
// in no fixed order), to a sandbox posting callbacks to a receiver, waits for every callback
// and returns the sandbox's counts and each recipient's statuses as they arrived, sorted.
func outcomes(t *testing.T, cfg sandbox.Config, n int) (sandbox.CallbackStats, map[string]string) {
	t.Helper()
	rc := &receiver{}
	hs := httptest.NewServer(rc)
	t.Cleanup(hs.Close)
	cfg.CallbackURL, cfg.CallbackMaxDelay = hs.URL, time.Millisecond
	s := start(t, cfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				body := msg(strings.Replace(okFields, "+919876543210", fmt.Sprintf("+91987654%04d", i), 1))
				if code, _, _ := post(t, s, call{body: body}); code != 200 {
					t.Errorf("send %d: %d", i, code)
				}
			}
		})
	}
	wg.Wait()
	testkit.Eventually(t, 20*time.Second, "every callback answered 200", func() bool {
		st := s.Stats().Callbacks
		return st.Messages == int64(n) && st.Pending == 0
	})
	rc.mu.Lock()
	defer rc.mu.Unlock()
	byTo := map[string][]string{}
	for _, b := range rc.bodies {
		st := b["meta_object"].(map[string]any)["value"].(map[string]any)["statuses"].([]any)[0].(map[string]any)
		v := st["status"].(string)
		if errs, ok := st["errors"].([]any); ok {
			v += fmt.Sprint(errs[0].(map[string]any)["code"])
		}
		byTo[st["recipient_id"].(string)] = append(byTo[st["recipient_id"].(string)], v)
	}
	out := map[string]string{}
	for to, sts := range byTo {
		slices.Sort(sts)
		out[to] = strings.Join(sts, ",")
	}
	return *s.Stats().Callbacks, out
}

// TestCallbackShareZeroMeansNone: a share set to 0 is none, not the default: with every share
// at 0 each message gets exactly "sent" and "delivered", once each.
func TestCallbackShareZeroMeansNone(t *testing.T) {
	const n = 60
	st, got := outcomes(t, sandbox.Config{CallbackFail: new(0.0), CallbackRead: new(0.0), CallbackDup: new(0.0),
		CallbackReorder: new(0.0), CallbackNotSent: new(0.0)}, n)
	if st.Delivered != n || st.Read != 0 || len(st.Failed) != 0 || st.NotSent != 0 || st.Posted != 2*n {
		t.Errorf("with every share 0: %+v, want %d delivered, nothing else, %d posts", st, n, 2*n)
	}
	for to, sts := range got {
		if sts != "delivered,sent" {
			t.Errorf("%s got %s", to, sts)
		}
	}
	// Unset (nil) shares take the defaults: some fail, some are read.
	st, _ = outcomes(t, sandbox.Config{}, n)
	if len(st.Failed) == 0 || st.Read == 0 || st.Delivered == n {
		t.Errorf("with the default shares: %+v", st)
	}
}

// TestCallbackDrawsFollowTheSeed: two sandboxes with one seed give every recipient the same
// callbacks (so the same delivered, read and failed counts), whatever order the sends arrive in;
// another seed gives others.
func TestCallbackDrawsFollowTheSeed(t *testing.T) {
	const n = 200
	cfg := sandbox.Config{Seed: 42, CallbackNotSent: new(0.05)}
	a, outA := outcomes(t, cfg, n)
	b, outB := outcomes(t, cfg, n)
	if fmt.Sprint(a.Delivered, a.Read, a.Failed, a.NotSent) != fmt.Sprint(b.Delivered, b.Read, b.Failed, b.NotSent) {
		t.Errorf("same seed, different counts:\n%+v\n%+v", a, b)
	}
	if !maps.Equal(outA, outB) || len(outA) != n {
		t.Errorf("same seed, different callbacks for some of the %d recipients (%d, %d seen)", n, len(outA), len(outB))
	}
	cfg.Seed = 43
	_, outC := outcomes(t, cfg, n)
	if maps.Equal(outA, outC) {
		t.Error("seeds 42 and 43 drew the same callbacks for every recipient")
	}
}
