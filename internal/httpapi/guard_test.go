package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

// TestJSONBodiesRefuseDuplicateKeysAndInvalidUTF8: encoding/json matches keys without regard to
// case and keeps the last of two, and turns invalid UTF-8 into U+FFFD; the API refuses all of
// these with 400 bad_json and enqueues nothing, on every route that takes a JSON body.
func TestJSONBodiesRefuseDuplicateKeysAndInvalidUTF8(t *testing.T) {
	e := setup(t)
	rcp := func(r string) string {
		return `{"campaign":"dup","defaults":{"type":"image","media_link":"` + link + `"},"recipients":[` + r + `]}`
	}
	for _, tc := range []struct{ name, method, path, body string }{
		{"campaign and Campaign", "POST", "/v1/campaigns", `{"campaign":"caseB","Campaign":"caseC","recipients":[{"to":"+919812345601","type":"image","media_link":"` + link + `"}]}`},
		{"to twice in a recipient", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","to":"+919812345602"}`)},
		{"TO beside to", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","TO":"+919812345602"}`)},
		{"escaped key beside its plain twin", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","\u0074o":"+919812345602"}`)},
		{"Kelvin sign folds with k", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","media_link":"` + link + `","media_lin\u212a":"https://example.com/b.png"}`)},
		{"long s folds with s", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","wa_source":"a","wa_\u017fource":"b"}`)},
		{"caption twice", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"a","caption":"b"}`)},
		{"defaults twice", "POST", "/v1/campaigns", `{"campaign":"dup","defaults":{"type":"image"},"DEFAULTS":{"type":"video"},"recipients":[{"to":"+919812345601"}]}`},
		{"type twice in defaults", "POST", "/v1/campaigns", `{"campaign":"dup","defaults":{"type":"image","Type":"video","media_link":"` + link + `"},"recipients":[{"to":"+919812345601"}]}`},
		{"invalid UTF-8 in a caption", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"a` + "\xff" + `b"}`)},
		{"overlong UTF-8", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"` + "\xc0\xaf" + `"}`)},
		{"UTF-8 surrogate", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"` + "\xed\xa0\x80" + `"}`)},
		{"truncated UTF-8", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"` + "\xe2\x80" + `"}`)},
		{"lone high surrogate escape", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"\ud83d"}`)},
		{"lone low surrogate escape", "POST", "/v1/campaigns", rcp(`{"to":"+919812345601","caption":"\ude00x"}`)},
		{"message: campaign and CAMPAIGN", "POST", "/v1/messages", `{"campaign":"m1","CAMPAIGN":"m2","to":"+919812345601","type":"image","media_link":"` + link + `"}`},
		{"message: to twice", "POST", "/v1/messages", `{"to":"+919812345601","to":"+919812345602","type":"image","media_link":"` + link + `"}`},
		{"message: invalid UTF-8", "POST", "/v1/messages", `{"to":"+919812345601","type":"image","media_link":"` + link + `","ref":"` + "\xfe" + `"}`},
		{"sender: rate and Rate", "PUT", "/v1/senders/919000000001", `{"rate":5,"Rate":500}`},
		{"sender: invalid UTF-8 in a key", "PUT", "/v1/senders/919000000001", "{\"rate\":5,\"b\xffurst\":1}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, "application/json", strings.NewReader(tc.body))
			if r.code != 400 {
				t.Fatalf("status = %d, want 400; body %s", r.code, r.body)
			}
			if p := r.problem(t); p.Code != CodeBadJSON {
				t.Errorf("code = %q, want %q (detail %q)", p.Code, CodeBadJSON, p.Detail)
			}
		})
	}
	if n, err := e.srv.ops.QueueCounts(""); err != nil || n.Pending != 0 {
		t.Errorf("%d jobs pending (%v) after refused bodies, want none", n.Pending, err)
	}
	if r := e.do("GET", "/v1/senders", "", nil); strings.Contains(string(r.body), `"override":true`) {
		t.Errorf("a refused PUT set a rate: %s", r.body)
	}

	// What stays accepted: the same key in different objects, non-ASCII text, a surrogate pair.
	ok := rcp(`{"to":"+919812345601","caption":"‹naïve›"},{"to":"+919812345602","caption":"\ud83d\ude00","ref":"\u00e9\"\\"}`)
	a := e.do("POST", "/v1/campaigns", "application/json", strings.NewReader(ok)).accepted(t)
	if a.Enqueued != 2 {
		t.Fatalf("valid body: %+v", a)
	}
	ti, err := e.insp.GetTaskInfo(lane("dup"), "dup:919000000001:919812345602")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := job.Decode(ti.Payload); err != nil || p.Caption != "😀" || p.Ref != "é\"\\" {
		t.Errorf("payload = %+v (%v), want the emoji caption and the unescaped ref", p, err)
	}
}

// TestJSONGuardAcrossReads: the guard sees the body one byte per Read (escapes, UTF-8 sequences
// and keys split across reads) and decides as it does on the whole.
func TestJSONGuardAcrossReads(t *testing.T) {
	for body, want := range map[string]bool{
		`{"campaign":"c","recipients":[{"to":"1","caption":"‹\ud83d\ude00é"},{"to":"2"}]}`: true,
		`{"campaign":"c","recipients":[{"to":"1","T\u004f":"2"}]}`:                         false,
		`{"campaign":"c","recipients":[{"to":"1","caption":"` + "\xe2\x80" + `"}]}`:        false,
		`{"campaign":"c","recipients":[{"to":"1","caption":"\ud83d\u0041"}]}`:              false,
		`{"campaign":"c","recipients":[` + strings.Repeat("[", 40) + `]}`:                  false,
	} {
		var req CampaignRequest
		err := decodeStrict(iotest.OneByteReader(strings.NewReader(body)), &req)
		if (err == nil) != want {
			t.Errorf("%q: err = %v, want accepted %v", body, err, want)
		}
	}
	// A body of many objects keeps only the open ones' keys: 200,000 recipients decode.
	var b bytes.Buffer
	b.WriteString(`{"campaign":"c","recipients":[`)
	for i := range 200_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"to":"%d","ref":"r"}`, i)
	}
	b.WriteString("]}")
	var req CampaignRequest
	if err := decodeStrict(&b, &req); err != nil || len(req.Recipients) != 200_000 {
		t.Errorf("large body: %v, %d recipients", err, len(req.Recipients))
	}
}

// TestLargeRequestsInFlightAreCapped: with --max-large-requests 1, a streamed campaign in
// flight holds the one slot; another large body (declared over the size, or streamed) is
// answered 429 with Retry-After before it is read, and nothing of it is enqueued; a small body
// still goes through. When the stream ends the slot is free again.
func TestLargeRequestsInFlightAreCapped(t *testing.T) {
	e := setup(t, func(c *Config) { c.MaxLargeRequests, c.LargeBodyBytes = 1, 1<<10 })
	pr, pw := io.Pipe()
	done := make(chan resp, 1)
	go func() {
		done <- e.do("POST", "/v1/campaigns?campaign=held&type=image&media_link="+link, "text/csv", pr)
	}()
	fmt.Fprint(pw, "to\n+919812345601\n")
	testkit.Eventually(t, 10*time.Second, "the streamed campaign's first row to be enqueued", func() bool {
		q, _ := e.insp.GetQueueInfo(lane("held"))
		return q != nil && q.Pending == 1
	})
	pad := strings.Repeat("x", 2<<10)
	big := `{"campaign":"big","defaults":{"type":"image","media_link":"` + link + `","ref":"` + pad + `"},"recipients":[{"to":"+919812345602"}]}`
	bigMsg := `{"campaign":"big","to":"+919812345602","type":"image","media_link":"` + link + `","caption":"` + pad[:1000] + `","ref":"` + pad[:100] + `"}`
	for _, tc := range []struct {
		name, path, ctype string
		body              io.Reader
	}{
		{"JSON campaign over 1 KiB", "/v1/campaigns", "application/json", strings.NewReader(big)},
		{"message over 1 KiB", "/v1/messages", "application/json", strings.NewReader(bigMsg)},
		{"second stream", "/v1/campaigns?campaign=big&type=image&media_link=" + link, "text/csv", io.MultiReader(strings.NewReader("to\n+919812345602\n"))},
	} {
		r := e.do("POST", tc.path, tc.ctype, tc.body)
		if r.code != http.StatusTooManyRequests {
			t.Errorf("%s while a stream is in flight: %d %s, want 429", tc.name, r.code, r.body)
			continue
		}
		if p := r.problem(t); p.Code != CodeTooManyLargeRequests {
			t.Errorf("%s: code %q", tc.name, p.Code)
		}
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", tc.name)
		}
	}
	if q, _ := e.insp.GetQueueInfo(lane("big")); q != nil && q.Size > 0 {
		t.Errorf("refused requests enqueued %d jobs", q.Size)
	}
	small := e.postJSON("/v1/messages", map[string]string{"campaign": "small", "to": "+919812345603", "type": "image", "media_link": link}).accepted(t)
	if small.Enqueued != 1 {
		t.Errorf("small message while the slot is taken: %+v", small.Summary)
	}
	fmt.Fprint(pw, "+919812345604\n")
	pw.Close()
	if a := (<-done).accepted(t); a.Enqueued != 2 {
		t.Errorf("held stream: %+v", a.Summary)
	}
	if a := e.do("POST", "/v1/campaigns", "application/json", strings.NewReader(big)).accepted(t); a.Enqueued != 1 {
		t.Errorf("large campaign after the stream ended: %+v", a.Summary)
	}
	if a := e.do("POST", "/v1/messages", "application/json", strings.NewReader(strings.Replace(bigMsg, "9812345602", "9812345605", 1))).accepted(t); a.Enqueued != 1 {
		t.Errorf("large message after the stream ended: %+v", a.Summary)
	}
}

// TestInsecureNoAuthServesOnlyLoopbackHosts: without tokens, DNS rebinding would let a page of
// any name reach the API through the operator's browser; only loopback Host names are served.
func TestInsecureNoAuthServesOnlyLoopbackHosts(t *testing.T) {
	e := setup(t, func(c *Config) { c.Tokens, c.InsecureNoAuth = nil, true })
	withTokens := setup(t)
	get := func(h http.Handler, host, path string) resp {
		req := httptest.NewRequest("GET", path, nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return resp{rec.Code, rec.Result().Header, rec.Body.Bytes()}
	}
	for host, ok := range map[string]bool{
		"localhost": true, "localhost:8080": true, "LocalHost:1": true, "127.0.0.1": true, "127.0.0.1:8080": true,
		"127.1.2.3:80": true, "[::1]:8080": true, "[::1]": true,
		"attacker.example": false, "attacker.example:8080": false, "localhost.attacker.example:8080": false,
		"127.0.0.1.nip.io:8080": false, "0.0.0.0:8080": false, "192.168.1.10:8080": false, "": false, "[::]:8080": false,
	} {
		for _, path := range []string{"/v1/senders", "/monitor/", "/healthz"} {
			r := get(e.h, host, path)
			if ok && r.code != 200 {
				t.Errorf("Host %q %s: %d %.200s, want 200", host, path, r.code, r.body)
			}
			if !ok {
				if r.code != http.StatusForbidden {
					t.Errorf("Host %q %s: %d, want 403", host, path, r.code)
				} else if p := r.problem(t); p.Code != CodeHostNotAllowed {
					t.Errorf("Host %q %s: code %q", host, path, p.Code)
				}
			}
		}
		// With tokens the name does not matter: a rebound page has no token.
		if r := get(withTokens.h, host, "/v1/senders"); r.code != 200 {
			t.Errorf("with tokens, Host %q: %d, want 200", host, r.code)
		}
	}
}

// TestMonitorRefusesCrossOriginWrites: with --monitor-write, a change through /monitor/ sent
// by a page of another origin (the browser adds the cached Basic login) is refused; the same
// change from the monitor's own page, or from a script that sends neither header, goes through.
// The browser test does it in Chromium.
func TestMonitorRefusesCrossOriginWrites(t *testing.T) {
	e := setup(t, func(c *Config) { c.MonitorWrite = true })
	e.postJSON("/v1/messages", map[string]string{"campaign": "x", "to": "+919812345601", "type": "image", "media_link": link}).accepted(t)
	ln := lane("x")
	post := func(hdr map[string]string) resp {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/monitor/api/queues/"+ln+":pause", strings.NewReader("x=y"))
		req.Header.Set("Authorization", "Basic "+basic(testToken))
		req.Header.Set("Content-Type", "text/plain")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		return resp{rec.Code, rec.Result().Header, rec.Body.Bytes()}
	}
	paused := func() bool {
		q, err := e.insp.GetQueueInfo(ln)
		if err != nil {
			t.Fatal(err)
		}
		return q.Paused
	}
	for name, hdr := range map[string]map[string]string{
		"cross-site":                   {"Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.example"},
		"same-site, other port":        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999"},
		"Origin only (older browsers)": {"Origin": "http://attacker.example"},
		"null Origin (sandboxed page)": {"Origin": "null"},
	} {
		r := post(hdr)
		if r.code != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", name, r.code, r.body)
		} else if p := r.problem(t); p.Code != CodeCrossOrigin {
			t.Errorf("%s: code %q", name, p.Code)
		}
		if paused() {
			t.Fatalf("%s: the queue was paused", name)
		}
	}
	for name, hdr := range map[string]map[string]string{
		"the monitor's own page": {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8080"},
		"a script (curl)":        {},
	} {
		if r := post(hdr); r.code != 204 || !paused() {
			t.Errorf("%s: %d %s, want 204 and the queue paused", name, r.code, r.body)
		}
		if r := e.do("POST", "/monitor/api/queues/"+ln+":resume", "", nil, "Basic "+basic(testToken)); r.code != 204 {
			t.Fatalf("resume: %d %s", r.code, r.body)
		}
	}
}
