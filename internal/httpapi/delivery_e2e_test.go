package httpapi

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

// TestCampaignThroughTheSandboxCountsWhatItsCallbacksSaid runs the whole path over HTTP: the API
// enqueues, a worker sends to the sandbox, the sandbox posts its status callbacks (failed by
// code, read, duplicated, reordered, some before the worker recorded the message id) to serve,
// and the campaign's counts equal the outcomes the sandbox drew.
func TestCampaignThroughTheSandboxCountsWhatItsCallbacksSaid(t *testing.T) {
	rs := redistest.StartWith(t, redistest.Options{})
	srv, err := New(Config{Redis: rs.ConnOpt(t), Producer: producer.Config{Queue: testQueue, Retention: time.Hour, DefaultFrom: testkit.Sender},
		Tokens: []config.Secret{testToken}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	sb := testkit.Sandbox(t, sandbox.Config{Balance: -1, Seed: 3, CallbackURL: api.URL + "/v1/kaleyra/status", CallbackToken: testToken,
		CallbackFail: new(0.3), CallbackNotSent: new(0.05), CallbackDup: new(0.3), CallbackReorder: new(0.3), CallbackMaxDelay: 20 * time.Millisecond,
		CallbackCodes: []string{"131047", "131026", "131049"}})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, worker.Config{Redis: rs.ConnOpt(t), Queue: testQueue, Concurrency: 8, Rate: 1000,
			From: testkit.Sender, ShutdownTimeout: 3 * time.Second, Retention: time.Hour,
			MetricsAddr: "", Kaleyra: worker.KaleyraConfig{SID: testkit.SID, APIKey: testkit.APIKey, BaseURL: sb.URL, Timeout: 2 * time.Second}}, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	const n = 200
	req := CampaignRequest{Campaign: "dlv", Defaults: job.Fields{Type: "image", MediaLink: link}}
	for i := range n {
		req.Recipients = append(req.Recipients, job.Fields{To: fmt.Sprintf("+9198123%05d", i)})
	}
	e := &env{t: t, rs: rs, srv: srv, h: srv.Handler()}
	srv.cfg.MaxRecipients = n
	if a := e.postJSON("/v1/campaigns", req).accepted(t); a.Enqueued != n {
		t.Fatalf("enqueued %+v", a.Summary)
	}
	led := store.New(rs.Client(t), testQueue, time.Hour)
	var c store.Counts
	testkit.Eventually(t, 60*time.Second, "every message sent and every callback answered", func() bool {
		st := sb.Stats()
		c, _ = led.Counts(context.Background(), "dlv")
		return c.Completed == n && st.Callbacks.Messages == n && st.Callbacks.Pending == 0
	}, func() string { return fmt.Sprintf("counts %+v, sandbox %+v", c, *sb.Stats().Callbacks) })
	want := sb.Stats().Callbacks
	if want.Abandoned != 0 {
		t.Fatalf("callbacks abandoned: %+v", want)
	}
	if c.Delivered != want.Delivered || c.Read != want.Read || c.NotSent != want.NotSent || !maps.Equal(c.FailedCodes, want.Failed) {
		t.Fatalf("counts %+v\nsandbox %+v", c, *want)
	}
	var failed int64
	for _, v := range want.Failed {
		failed += v
	}
	if c.Failed != failed || failed == 0 || want.Read == 0 || want.NotSent == 0 {
		t.Fatalf("failed %d, sandbox %+v: want some of each outcome", c.Failed, *want)
	}
	if u, _ := led.Unmatched(context.Background()); u != 0 {
		t.Errorf("unmatched = %d after every message was recorded", u)
	}
	t.Logf("sandbox: %+v", *want)
}
