package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/redistest"
)

// vmHWM is a process's peak resident memory in kB (VmHWM of /proc/<pid>/status).
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", l, err)
			}
			return n
		}
	}
	t.Skip("no VmHWM in /proc/<pid>/status")
	return 0
}

// largeCampaign is a JSON campaign of about size bytes, one recipient per ~140 bytes (numbers
// that are rejected, so the test measures the request, not Redis).
func largeCampaign(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"campaign":%q,"defaults":{"type":"image","media_link":"https://example.com/a.png"},"recipients":[`, id)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"to":"x%d","caption":"%s"}`, i, strings.Repeat("c", 110))
	}
	b.WriteString("]}")
	return b.Bytes()
}

// TestServeBoundsLargeRequestsInFlight: eight concurrent 2 MB campaigns took the real serve to
// about six times the peak of one (8 × 15 MB: 1.5 GB); with --max-large-requests 1 the ones
// beyond the first are answered 429 with Retry-After before their bodies are read, and the
// peak stays near that of a single request.
func TestServeBoundsLargeRequestsInFlight(t *testing.T) {
	start := time.Now()
	rs := redistest.Start(t)
	p, addr := startServe(t, []string{"WABULK_REDIS_URL=" + rs.URL, "WABULK_API_TOKENS=" + serveToken}, "--max-large-requests", "1")
	t.Logf("serve up after %v", time.Since(start))
	pid := p.Cmd.Process.Pid
	post := func(body []byte) (int, string, error) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/campaigns?outcomes=all", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+serveToken)
		req.Header.Set("Content-Type", "application/json")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer r.Body.Close()
		io.Copy(io.Discard, r.Body)
		return r.StatusCode, r.Header.Get("Retry-After"), nil
	}
	const size = 2 << 20
	base := vmHWM(t, pid)
	if code, _, err := post(largeCampaign("one", size)); err != nil || code != 202 {
		t.Fatalf("one large campaign: %d %v", code, err)
	}
	one := vmHWM(t, pid) - base
	t.Logf("one request done after %v", time.Since(start))

	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = largeCampaign(fmt.Sprintf("c%d", i), size)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		status = map[int]int{}
	)
	for _, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, retry, err := post(b)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				// A client still sending a refused body may see the connection close first.
				status[-1]++
			case code == 429 && retry == "":
				t.Errorf("429 without Retry-After")
			default:
				status[code]++
			}
		}()
	}
	wg.Wait()
	eight := vmHWM(t, pid) - base
	t.Logf("eight requests done after %v", time.Since(start))
	t.Logf("VmHWM above the idle process: one request %d kB, eight concurrent %d kB; answers %v", one, eight, status)
	if status[202] < 1 || status[429] < 1 || status[202]+status[429]+status[-1] != 8 {
		t.Errorf("answers %v: want at least one 202 and one 429, nothing else", status)
	}
	if eight > 2*one {
		t.Errorf("eight concurrent large campaigns peaked at %d kB above idle, more than twice one campaign's %d kB: large requests in flight are not bounded", eight, one)
	}
}

// TestServeInsecureNoAuthServesOnlyLoopbackHosts: the real binary with --insecure-no-auth
// refuses a request whose Host is another name (DNS rebinding) and serves 127.0.0.1 / localhost.
func TestServeInsecureNoAuthServesOnlyLoopbackHosts(t *testing.T) {
	rs := redistest.Start(t)
	_, addr := startServe(t, []string{"WABULK_REDIS_URL=" + rs.URL}, "--insecure-no-auth")
	_, port, _ := strings.Cut(addr, ":")
	for host, want := range map[string]int{"attacker.example:" + port: 403, "127.0.0.1:" + port: 200, "localhost:" + port: 200} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/openapi.json", nil)
		req.Host = host
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != want || (want == 403 && !strings.Contains(string(b), "host_not_allowed")) {
			t.Errorf("Host %s: %d %.200s, want %d", host, r.StatusCode, b, want)
		}
	}
}
