package kaleyra_test

import (
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wabulk/wabulk/internal/kaleyra"
)

// The failure answers of the API reference (kaleyra/send-media-messages.txt), verbatim.
const (
	bodyRBC001 = `{
    "code": "RBC001",
    "message": "Incorrect SID or API key.",
    "data": [],
    "error": {
        "error": "Incorrect SID or API key."
    }
}`
	bodyWA401 = `{
    "code": "WA401",
    "message": "Phone number is not present or does not belong to the account.",
    "data": {},
    "error": {
        "phone_number": "Phone number is not present or does not belong to the account."
    }
}`
	bodyWA400 = `{
    "code": "WA400",
    "message": "Refer to correct payload format",
    "data": {},
    "error": {
        "payload": "Incorrect payload format"
    }
}`
	bodyWA500 = `{
    "code": "WA500",
    "message": "Please try again later",
    "data": {},
    "error": {
        "error": "Internal server error"
    }
}`
	bodyE110 = `{
    "code": "E110",
    "message": "Please check your balance, You have a low balance!",
    "data": {},
    "error": {
        "balance": "Please check your balance, You have a low balance!"
    }
}`
	bodyWA401Account = `{
    "code": "WA-401",
    "message": "API is not available for given customer.Please contact support for more info",
    "data": {},
    "error": {
        "account": "API is not available for given customer.Please contact support for more info"
    }
}`
	bodyWA401Version = `{
    "code": "WA-401",
    "message": "The phone number you're using is associated with different Version of our WA API. Please use the appropriate endpoint.",
    "data": {},
    "error": {
        "phone_number": "The phone number you're using is associated with different Version of our WA API. Please use the appropriate endpoint."
    }
}`
	// WAV2101 is named by docs/guarantees.md's answer table but not shown in the reference; same shape.
	bodyWAV2101 = `{"code":"WAV2101","message":"Daily limit reached","data":{},"error":{"limit":"Daily limit reached"}}`

	htmlBadGateway = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

// documented is every documented answer with the status it comes with.
var documented = []struct {
	name   string
	status int
	body   string
}{
	{"RBC001", 401, bodyRBC001},
	{"WA401", 401, bodyWA401},
	{"WA400", 400, bodyWA400},
	{"WA500", 500, bodyWA500},
	{"E110", 400, bodyE110},
	{"WA-401-account", 401, bodyWA401Account},
	{"WA-401-version", 401, bodyWA401Version},
	{"WAV2101", 400, bodyWAV2101},
}

func TestDocumentedFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		code    string
		message string
		fields  map[string]string
		retry   bool
	}{
		{"wrong SID or key is permanent", 401, bodyRBC001, "RBC001", "Incorrect SID or API key.",
			map[string]string{"error": "Incorrect SID or API key."}, false},
		{"sender not on the account is permanent", 401, bodyWA401, "WA401", "Phone number is not present or does not belong to the account.",
			map[string]string{"phone_number": "Phone number is not present or does not belong to the account."}, false},
		{"incorrect payload is permanent", 400, bodyWA400, "WA400", "Refer to correct payload format",
			map[string]string{"payload": "Incorrect payload format"}, false},
		{"internal error is transient", 500, bodyWA500, "WA500", "Please try again later",
			map[string]string{"error": "Internal server error"}, true},
		{"low balance is permanent", 400, bodyE110, "E110", "Please check your balance, You have a low balance!",
			map[string]string{"balance": "Please check your balance, You have a low balance!"}, false},
		{"API not available for the account is permanent", 401, bodyWA401Account, "WA-401",
			"API is not available for given customer.Please contact support for more info",
			map[string]string{"account": "API is not available for given customer.Please contact support for more info"}, false},
		{"sender on another API version is permanent", 401, bodyWA401Version, "WA-401",
			"The phone number you're using is associated with different Version of our WA API. Please use the appropriate endpoint.",
			map[string]string{"phone_number": "The phone number you're using is associated with different Version of our WA API. Please use the appropriate endpoint."}, false},
		{"daily limit is permanent", 400, bodyWAV2101, "WAV2101", "Daily limit reached", map[string]string{"limit": "Daily limit reached"}, false},
		{"daily limit is permanent even on a 429", 429, bodyWAV2101, "WAV2101", "Daily limit reached", map[string]string{"limit": "Daily limit reached"}, false},
		{"daily limit is permanent even on a 500", 500, bodyWAV2101, "WAV2101", "Daily limit reached", map[string]string{"limit": "Daily limit reached"}, false},
		{"daily limit on a 200 is still a failure", 200, bodyWAV2101, "WAV2101", "Daily limit reached", map[string]string{"limit": "Daily limit reached"}, false},
		{"an unknown code on a 4xx is permanent", 403, `{"code":"X1","message":"no"}`, "X1", "no", nil, false},
		{"an unknown code on a 5xx is transient", 502, `{"code":"X2","message":"later"}`, "X2", "later", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := parse(t, tc.status, nil, tc.body)
			if e.Status != tc.status || e.Code != tc.code || e.Message != tc.message || !maps.Equal(e.Fields, tc.fields) {
				t.Errorf("got status %d code %q message %q fields %v", e.Status, e.Code, e.Message, e.Fields)
			}
			if e.Retryable() != tc.retry {
				t.Errorf("Retryable() = %v, want %v", e.Retryable(), tc.retry)
			}
			if !strings.HasPrefix(e.Error(), tc.code+": ") || e.Label() != tc.code {
				t.Errorf("Error() %q, Label() %q should start with the code", e.Error(), e.Label())
			}
			if e.Timeout || e.RetryAfter != 0 {
				t.Errorf("timeout %v retry-after %v", e.Timeout, e.RetryAfter)
			}
		})
	}
}

// parse calls ParseAnswer and insists on an *Error.
func parse(t *testing.T, status int, h http.Header, body string) *kaleyra.Error {
	t.Helper()
	err := kaleyra.ParseAnswer(status, h, []byte(body))
	var e *kaleyra.Error
	if !errors.As(err, &e) {
		t.Fatalf("ParseAnswer(%d, %.60q) = %v, want *kaleyra.Error", status, body, err)
	}
	return e
}

func TestAnswersWithoutJSONAreClassifiedByStatus(t *testing.T) {
	tenMB := `{"code":"WA500","message":"` + strings.Repeat("x", 10<<20)
	for _, tc := range []struct {
		name  string
		code  int
		body  string
		retry bool
	}{
		{"HTML 502 from a proxy is transient", 502, htmlBadGateway, true},
		{"empty 500 is transient", 500, "", true},
		{"truncated 500 is transient", 500, bodyWA500[:40], true},
		{"10 MB body cut to the cap is transient", 500, tenMB[:kaleyra.MaxAnswerBytes], true},
		{"gateway timeout page is transient", 504, "<html>504</html>", true},
		{"empty 400 is permanent", 400, "", false},
		{"HTML 404 is permanent", 404, "<html>Not Found</html>", false},
		{"JSON array is not an answer", 500, `[1,2]`, true},
		{"JSON null is not an answer", 403, `null`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := parse(t, tc.code, nil, tc.body)
			if e.Code != "" || e.Status != tc.code || e.Retryable() != tc.retry {
				t.Errorf("got code %q status %d retry %v", e.Code, e.Status, e.Retryable())
			}
			if want := "HTTP " + strconv.Itoa(tc.code); e.Label() != want || !strings.HasPrefix(e.Error(), want+": ") {
				t.Errorf("Label %q, Error %q, want both to start with %q", e.Label(), e.Error(), want)
			}
		})
	}
}

func TestSuccessIsNil(t *testing.T) {
	for _, body := range []string{`{"messages":[{"id":"wamid.1"}]}`, "", "garbage", `{"code":"OK"}`} {
		for _, status := range []int{200, 201, 202} {
			if err := kaleyra.ParseAnswer(status, nil, []byte(body)); err != nil {
				t.Errorf("ParseAnswer(%d, %q) = %v", status, body, err)
			}
		}
	}
}

func TestRetryAfterIsSurfacedOn429And503(t *testing.T) {
	inAMinute := time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name     string
		status   int
		header   string
		min, max time.Duration
	}{
		{"seconds on a 429", 429, "7", 7 * time.Second, 7 * time.Second},
		{"seconds on a 503", 503, "1", time.Second, time.Second},
		{"HTTP date on a 429", 429, inAMinute, 58 * time.Second, time.Minute},
		{"HTTP date on a 503", 503, inAMinute, 58 * time.Second, time.Minute},
		{"date in the past is no wait", 429, "Mon, 02 Jan 2006 15:04:05 GMT", 0, 0},
		{"negative seconds are no wait", 429, "-5", 0, 0},
		{"huge seconds are capped at an hour", 429, "99999999999999", time.Hour, time.Hour},
		{"garbage is no wait", 503, "soon", 0, 0},
		{"absent is no wait", 429, "", 0, 0},
		{"ignored on a 500", 500, "7", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("Retry-After", tc.header)
			}
			e := parse(t, tc.status, h, "")
			if e.RetryAfter < tc.min || e.RetryAfter > tc.max {
				t.Errorf("RetryAfter %v, want in [%v, %v]", e.RetryAfter, tc.min, tc.max)
			}
			if !e.Retryable() {
				t.Error("not retryable")
			}
		})
	}
}

// FuzzParseAnswer feeds the answer parser arbitrary statuses and bodies. Its seed corpus holds
// every documented answer, so `go test` runs them all.
func FuzzParseAnswer(f *testing.F) {
	for _, d := range documented {
		f.Add(d.status, []byte(d.body))
	}
	f.Add(200, []byte(`{"messaging_product":"whatsapp","messages":[{"id":"wamid.1"}]}`))
	f.Add(502, []byte(htmlBadGateway))
	f.Add(500, []byte(""))
	f.Add(500, []byte(bodyWA500[:40]))
	f.Add(429, []byte(`{"message":"API rate limit exceeded"}`))
	f.Add(400, []byte(`{"code":"\u0000\u001b[31m","message":{"a":[1]},"error":{"k":"\n\r"}}`))
	f.Add(400, []byte("{\"code\":\"\xff\xfe\",\"message\":\"\xc3\",\"error\":{\"\xff\":\"\xff\"}}"))
	f.Add(401, []byte(`{"code":1,"message":null,"error":[]}`))
	f.Add(0, []byte(`{}`))
	f.Add(-1, []byte(`{"code":"`+strings.Repeat("é", 5000)+`"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		h := http.Header{"Retry-After": {"3"}}
		err := kaleyra.ParseAnswer(status, h, body)
		if err == nil {
			if status < 200 || status > 299 {
				t.Fatalf("nil error for status %d", status)
			}
			return
		}
		var e *kaleyra.Error
		if !errors.As(err, &e) {
			t.Fatalf("%T is not *kaleyra.Error", err)
		}
		if status >= 200 && status <= 299 && e.Code != kaleyra.CodeDailyLimit {
			t.Fatalf("2xx failed with %v", err)
		}
		msg := err.Error()
		if !utf8.ValidString(msg) || len(msg) > 4096 {
			t.Fatalf("Error() of %d bytes, valid UTF-8 %v", len(msg), utf8.ValidString(msg))
		}
		if len(e.Fields) > 16 {
			t.Fatalf("%d fields", len(e.Fields))
		}
		for k, v := range e.Fields {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || len(k)+len(v) > 4096 {
				t.Fatalf("field %q: %q", k, v)
			}
		}
		_ = e.Retryable()
		_ = e.Label()
	})
}
