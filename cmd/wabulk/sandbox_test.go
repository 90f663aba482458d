package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
)

// TestSandboxCallbackShareFlagsZeroMeanNone: `wabulk sandbox --callback-fail 0 --callback-read 0
// --callback-dup 0 --callback-reorder 0` posts exactly "sent" and "delivered" for every accepted
// message, and its --dump says so: 0 is none, not the default.
func TestSandboxCallbackShareFlagsZeroMeanNone(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Status string `json:"status"`
		}
		if json.NewDecoder(r.Body).Decode(&b) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got[b.Status]++
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, nil, "sandbox", "--addr", addr, "--sid", testkit.SID, "--api-key", testkit.APIKey,
		"--senders", testkit.Sender, "--callback-url", rcv.URL, "--callback-max-delay", "1ms", "--dump",
		"--callback-fail", "0", "--callback-read", "0", "--callback-dup", "0", "--callback-reorder", "0")
	testkit.Eventually(t, 20*time.Second, "the sandbox to listen", func() bool { return strings.Contains(p.Stdout(), "listening") },
		func() string { return p.Stderr() })

	const n = 30
	for i := range n {
		body, err := kaleyra.Body(kaleyra.Message{To: fmt.Sprintf("+9198765%05d", i), Type: "image", MediaLink: "https://example.com/a.png"})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v2/"+testkit.SID+"/whatsapp/"+strings.TrimPrefix(testkit.Sender, "+")+"/messages", bytes.NewReader(body))
		req.Header.Set("api-key", testkit.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("send %d: %d", i, resp.StatusCode)
		}
	}
	testkit.Eventually(t, 20*time.Second, "every callback", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["sent"] == n && got["delivered"] == n
	})
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t, 15*time.Second)
	mu.Lock()
	if len(got) != 2 {
		t.Errorf("callbacks posted by status: %v, want only sent and delivered", got)
	}
	mu.Unlock()
	out := p.Stdout()
	var st sandbox.Stats
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil || st.Callbacks == nil {
		t.Fatalf("--dump: %v\n%s", err, out)
	}
	if c := st.Callbacks; c.Delivered != n || c.Read != 0 || len(c.Failed) != 0 || c.NotSent != 0 || c.Posted != 2*n {
		t.Errorf("dumped callback stats %+v", *c)
	}
}
