package kaleyra_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
)

const (
	testSID = "HXAP16XXXXXX97IN"
	testKey = "Axxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx3-SECRET"
)

// newClient returns a client of the test account talking to base.
func newClient(t *testing.T, base string, timeout time.Duration) *kaleyra.Client {
	t.Helper()
	c, err := kaleyra.New(kaleyra.Config{SID: testSID, APIKey: testKey, BaseURL: base, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// captured is what the fake endpoint saw of one request.
type captured struct {
	method, path, key, ctype string
	body                     string
}

// recorder starts an httptest server that records each request and answers with status+body.
func recorder(t *testing.T, status int, body string) (*httptest.Server, <-chan captured) {
	t.Helper()
	seen := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- captured{r.Method, r.URL.EscapedPath(), r.Header.Get("api-key"), r.Header.Get("Content-Type"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func TestSendPinsTheRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  kaleyra.Message
		body string
	}{
		{"image by id without extra_info",
			kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "10xxxxxxxxxxxx91"},
			`{"messaging_object":{"image":{"id":"10xxxxxxxxxxxx91"},"messaging_product":"whatsapp","recipient_type":"individual","to":"+919876543210","type":"image"}}`},
		{"image by id with extra_info",
			kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "10xxxxxxxxxxxx91", Ref: "customer1", Ref1: "marketing", Ref2: "dictionary", WASource: "api"},
			`{"messaging_object":{"image":{"id":"10xxxxxxxxxxxx91"},"messaging_product":"whatsapp","recipient_type":"individual","to":"+919876543210","type":"image"},"extra_info":{"ref":"customer1","ref1":"marketing","ref2":"dictionary","wa_source":"api"}}`},
		{"document by link with caption and filename",
			kaleyra.Message{To: "+919876543210", Type: "document", MediaLink: "https://www.kaleyra.com/a.pdf", Caption: "Your invoice", Filename: "invoice.pdf"},
			`{"messaging_object":{"document":{"link":"https://www.kaleyra.com/a.pdf","caption":"Your invoice","filename":"invoice.pdf"},"messaging_product":"whatsapp","recipient_type":"individual","to":"+919876543210","type":"document"}}`},
		{"document by link with caption, filename and one ref",
			kaleyra.Message{To: "+919876543210", Type: "document", MediaLink: "https://www.kaleyra.com/a.pdf", Caption: "Your invoice", Filename: "invoice.pdf", Ref: "c-42"},
			`{"messaging_object":{"document":{"link":"https://www.kaleyra.com/a.pdf","caption":"Your invoice","filename":"invoice.pdf"},"messaging_product":"whatsapp","recipient_type":"individual","to":"+919876543210","type":"document"},"extra_info":{"ref":"c-42"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, seen := recorder(t, 200, `{"messaging_product":"whatsapp","messages":[{"id":"wamid.abc"}]}`)
			res, err := newClient(t, srv.URL, 0).Send(context.Background(), "+91 90000 00001", tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := <-seen
			want := captured{"POST", "/v2/" + testSID + "/whatsapp/919000000001/messages", testKey, "application/json", tc.body}
			if got != want {
				t.Errorf("request\n got %+v\nwant %+v", got, want)
			}
			if res.Status != 200 || res.MessageID != "wamid.abc" {
				t.Errorf("result %+v", res)
			}
			if b, _ := kaleyra.Body(tc.msg); string(b) != tc.body {
				t.Errorf("Body() = %s", b)
			}
		})
	}
}

func TestMessageIDInsideData(t *testing.T) {
	srv, _ := recorder(t, 202, `{"data":{"messages":[{"id":"wamid.in-data"}]}}`)
	res, err := newClient(t, srv.URL, 0).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "video", MediaID: "1"})
	if err != nil || res.MessageID != "wamid.in-data" || res.Status != 202 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestRegionsAndBaseURL(t *testing.T) {
	for _, tc := range []struct {
		name, region, base, want string
	}{
		{"no region is India", "", "", "https://api.in.kaleyra.io"},
		{"in", "in", "", "https://api.in.kaleyra.io"},
		{"sg", "sg", "", "https://api.kaleyra.io"},
		{"eu", "eu", "", "https://api.eu.kaleyra.io"},
		{"na", "na", "", "https://api.na.kaleyra.ai"},
		{"base URL overrides the region", "eu", "http://127.0.0.1:8089", "http://127.0.0.1:8089"},
		{"base URL keeps its path prefix and loses its trailing slash", "", "https://proxy.example/kaleyra/", "https://proxy.example/kaleyra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kaleyra.New(kaleyra.Config{SID: "S1", APIKey: "k", Region: tc.region, BaseURL: tc.base})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := c.URL("+91-90000-00001"), tc.want+"/v2/S1/whatsapp/919000000001/messages"; got != want {
				t.Errorf("URL %s, want %s", got, want)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kaleyra.Config
	}{
		{"missing SID", kaleyra.Config{APIKey: "k"}},
		{"SID with a slash", kaleyra.Config{SID: "a/b", APIKey: "k"}},
		{"missing key", kaleyra.Config{SID: "s"}},
		{"key on two lines", kaleyra.Config{SID: "s", APIKey: "k\r\nX-Evil: 1"}},
		{"key with DEL", kaleyra.Config{SID: "s", APIKey: "k\x7fk"}},
		{"key with NUL", kaleyra.Config{SID: "s", APIKey: "k\x00k"}},
		{"key with ESC", kaleyra.Config{SID: "s", APIKey: "k\x1bk"}},
		{"unknown region", kaleyra.Config{SID: "s", APIKey: "k", Region: "us"}},
		{"base URL not http", kaleyra.Config{SID: "s", APIKey: "k", BaseURL: "ftp://x"}},
		{"relative base URL", kaleyra.Config{SID: "s", APIKey: "k", BaseURL: "/v2"}},
		{"base URL with credentials", kaleyra.Config{SID: "s", APIKey: "k", BaseURL: "https://u:p@x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := kaleyra.New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestCheckKeyIsNetHTTPsRule: CheckKey accepts exactly the keys net/http sends as a header
// value, so a key that passes it never fails a call for its bytes.
func TestCheckKeyIsNetHTTPsRule(t *testing.T) {
	for b := 0; b < 256; b++ {
		key := "Ab" + string([]byte{byte(b)}) + "yZ"
		req, _ := http.NewRequest("POST", "http://127.0.0.1:1/", nil)
		req.Header.Set("api-key", key)
		// Writing the request is where net/http checks header values; nothing is sent.
		_, werr := http.DefaultTransport.RoundTrip(req)
		refused := werr != nil && strings.Contains(werr.Error(), "invalid header field value")
		err := kaleyra.CheckKey(key)
		if (err != nil) != refused {
			t.Errorf("byte 0x%02x: CheckKey %v, net/http refused %v (%v)", b, err, refused, werr)
		}
		if err != nil && strings.Contains(err.Error(), "yZ") {
			t.Errorf("byte 0x%02x: error shows the key: %v", b, err)
		}
	}
}

func TestSendRejectsWhatCannotBeSent(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1", 0)
	for _, tc := range []struct {
		name string
		from string
		msg  kaleyra.Message
	}{
		{"unknown media type", "919000000001", kaleyra.Message{To: "+919876543210", Type: "text"}},
		{"sender without digits", "+", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Send(context.Background(), tc.from, tc.msg)
			var e *kaleyra.Error
			if !errors.As(err, &e) || e.Retryable() || e.Label() != "invalid" || !strings.HasPrefix(e.Error(), "invalid: ") {
				t.Fatalf("%v: want a permanent *kaleyra.Error labelled invalid", err)
			}
		})
	}
}

func TestAnswersOverHTTP(t *testing.T) {
	big := `{"code":"WA500","message":"` + strings.Repeat("x", 10<<20) + `"}`
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		code   string
		retry  bool
	}{
		{"documented WA500 is transient", 500, "application/json", body("WA500"), "WA500", true},
		{"documented E110 is permanent", 400, "application/json", body("E110"), "E110", false},
		{"HTML 502 is transient by status", 502, "text/html", htmlBadGateway, "", true},
		{"empty 500 is transient by status", 500, "application/json", "", "", true},
		{"truncated 500 is transient by status", 500, "application/json", body("WA500")[:30], "", true},
		{"10 MB 500 is transient by status", 500, "application/json", big, "", true},
		{"empty 403 is permanent by status", 403, "text/plain", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			_, err := newClient(t, srv.URL, 0).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
			var e *kaleyra.Error
			if !errors.As(err, &e) {
				t.Fatalf("%v", err)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Retryable() != tc.retry {
				t.Errorf("status %d code %q retry %v", e.Status, e.Code, e.Retryable())
			}
			if len(e.Error()) > 1024 {
				t.Errorf("Error() of %d bytes", len(e.Error()))
			}
		})
	}
}

func TestRetryAfterOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	_, err := newClient(t, srv.URL, 0).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	var e *kaleyra.Error
	if !errors.As(err, &e) || e.Status != 429 || e.RetryAfter != 3*time.Second || !e.Retryable() {
		t.Fatalf("%#v", err)
	}
}

// stall is a handler that answers nothing until the client or the test goes away.
func stall(t *testing.T) *httptest.Server {
	t.Helper()
	quit := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); srv.Close() })
	return srv
}

func TestTimeoutsAreRetryable(t *testing.T) {
	t.Run("client timeout", func(t *testing.T) {
		c := newClient(t, stall(t).URL, 50*time.Millisecond)
		_, err := c.Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
		assertTimeout(t, err)
	})
	t.Run("caller's deadline", func(t *testing.T) {
		c := newClient(t, stall(t).URL, time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Send(ctx, "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
		assertTimeout(t, err)
	})
}

func assertTimeout(t *testing.T, err error) {
	t.Helper()
	var e *kaleyra.Error
	if !errors.As(err, &e) || !e.Timeout || e.Status != 0 || !e.Retryable() || e.Label() != "timeout" || !strings.HasPrefix(e.Error(), "timeout: ") {
		t.Fatalf("%v: want a retryable timeout", err)
	}
}

func TestNoAnswerIsARetryableNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := newClient(t, url, time.Second).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	var e *kaleyra.Error
	if !errors.As(err, &e) || e.Timeout || e.Status != 0 || !e.Retryable() || e.Label() != "network" || e.Unwrap() == nil {
		t.Fatalf("%v: want a retryable network error", err)
	}
}

func TestTheKeyNeverPrints(t *testing.T) {
	c := newClient(t, "https://api.in.kaleyra.io", 0)
	regional, err := kaleyra.New(kaleyra.Config{SID: testSID, APIKey: testKey, Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, v := range []any{c, *c, regional, *regional} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			texts = append(texts, fmt.Sprintf(verb, v))
		}
	}
	// Every kind of error the client returns.
	for _, a := range kaleyradocs.Answers {
		texts = append(texts, kaleyra.ParseAnswer(a.Status, nil, []byte(a.Body)).Error())
	}
	srv, _ := recorder(t, 401, body("RBC001"))
	_, err = c.Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "text"})
	texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	_, err = newClient(t, srv.URL, 0).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	_, err = newClient(t, stall(t).URL, 20*time.Millisecond).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	_, err = newClient(t, "http://127.0.0.1:1", time.Second).Send(context.Background(), "919000000001", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
	_, err = kaleyra.New(kaleyra.Config{SID: "a/b", APIKey: testKey})
	texts = append(texts, err.Error())
	_, err = kaleyra.New(kaleyra.Config{SID: "s", APIKey: testKey + "\n"})
	texts = append(texts, err.Error())

	hexKey := fmt.Sprintf("%x", testKey)
	for _, s := range texts {
		if strings.Contains(s, "SECRET") || strings.Contains(s, hexKey) {
			t.Errorf("the key shows in %q", s)
		}
	}
}

func TestAnAnswerEchoingTheKeyIsRedacted(t *testing.T) {
	body := `{"code":"RBC001","message":"Incorrect SID or API key ` + testKey + `.","data":[],"error":{"error":"bad key ` + testKey + `"}}`
	srv, _ := recorder(t, 401, body)
	_, err := newClient(t, srv.URL, time.Second).Send(context.Background(), "919000000001",
		kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	var ke *kaleyra.Error
	if !errors.As(err, &ke) || ke.Code != "RBC001" {
		t.Fatalf("err = %v, want RBC001", err)
	}
	if text := fmt.Sprintf("%v %+v %#v", err, ke, ke.Fields); strings.Contains(text, testKey) {
		t.Fatalf("the key leaks through the answer: %s", text)
	}
}
