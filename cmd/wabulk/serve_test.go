package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/testkit"
)

const serveToken = "dev-token-change-me-0123456789"

// startServe runs the real binary and waits until /healthz answers.
func startServe(t *testing.T, env []string, args ...string) (*proctest.Proc, string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, env, append([]string{"serve", "--addr", addr}, args...)...)
	testkit.Eventually(t, 20*time.Second, "serve to answer /healthz", func() bool {
		if p.Exited() {
			t.Fatalf("serve exited; stderr:\n%s", p.Stderr())
		}
		r, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, func() string { return "stderr:\n" + p.Stderr() })
	return p, addr
}

// readmeCurl returns the URL and -d body of the README's first `curl … /v1/campaigns` example.
func readmeCurl(t *testing.T) (url, body string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## HTTP API\n")
	if !ok {
		t.Fatal("README.md has no ## HTTP API section")
	}
	m := regexp.MustCompile(`(?s)curl -sS -X POST (http://\S+/v1/campaigns) \\\n.*?-d '([^']*)'`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("no curl POST /v1/campaigns example with -d in the README's HTTP API section")
	}
	return m[1], m[2]
}

// TestServeREADMEExampleAndSIGTERM runs the README's campaign example against the real binary,
// exactly as curl sends it, then stops the server with SIGTERM.
func TestServeREADMEExampleAndSIGTERM(t *testing.T) {
	rs := redistest.Start(t)
	// KALEYRA_FROM as the README's example exports it: rows without "from" need a sender.
	p, addr := startServe(t, []string{"WABULK_REDIS_URL=" + rs.URL, "WABULK_API_TOKENS=" + serveToken, "KALEYRA_FROM=+919000000001"})
	url, body := readmeCurl(t)
	url = strings.Replace(url, "127.0.0.1:8080", addr, 1)
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+serveToken) // $WABULK_API_TOKENS of the example
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Campaign                       string
		Enqueued, Duplicates, Rejected int
	}
	if resp.StatusCode != 202 || json.Unmarshal(b, &got) != nil || got.Campaign != "spring-2026" || got.Enqueued != 2 || got.Rejected != 1 {
		t.Errorf("README example answered %d %s; the README promises 202 with 2 enqueued, 1 rejected", resp.StatusCode, b)
	}

	r, _ := http.Get("http://" + addr + "/v1/campaigns/spring-2026")
	if r.StatusCode != 401 {
		t.Errorf("GET without a token = %d, want 401", r.StatusCode)
	}
	r.Body.Close()

	start := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start))
	if !strings.Contains(p.Stderr(), "serve stopped") {
		t.Errorf("no 'serve stopped' log line; stderr:\n%s", p.Stderr())
	}
}

func TestServeRefusesToStartWithoutTokens(t *testing.T) {
	rs := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + rs.URL}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no tokens", []string{"--addr", "127.0.0.1:0"}, "WABULK_API_TOKENS is required"},
		{"insecure on every interface", []string{"--addr", ":0", "--insecure-no-auth"}, "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := proctest.Run(t, env, nil, append([]string{"serve"}, tc.args...)...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure naming %q", code, stderr, tc.want)
			}
		})
	}
	_, addr := startServe(t, env, "--insecure-no-auth")
	r, err := http.Get(fmt.Sprintf("http://%s/v1/openapi.json", addr))
	if err != nil || r.StatusCode != 200 {
		t.Errorf("--insecure-no-auth on loopback: %v %v, want 200 without a token", r, err)
	}
}
