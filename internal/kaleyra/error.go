package kaleyra

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Error is every failed send: Kaleyra's error answer, an answer without a code, or no answer at
// all (Status 0). Callers ask Retryable, they do not parse the text.
type Error struct {
	// Status is the HTTP status; 0 when no answer arrived.
	Status int
	// Code is Kaleyra's code (E110, WA400, RBC001, WA401, WA-401, WA500, WAV2101, …); empty when
	// the answer had none.
	Code string
	// Message is Kaleyra's message, or a description of what went wrong.
	Message string
	// Fields are the answer's "error" object (e.g. {"balance": "…"}).
	Fields map[string]string
	// RetryAfter is the wait a 429 or 503 asked for; 0 when none.
	RetryAfter time.Duration
	// Timeout is set when no answer arrived in time.
	Timeout bool

	permanent bool
	cause     error
}

// Kaleyra's documented codes.
const (
	CodeLowBalance = "E110"
	CodeBadPayload = "WA400"
	CodeAuth       = "RBC001"
	CodeSender     = "WA401"
	CodeAccount    = "WA-401"
	CodeInternal   = "WA500"
	CodeDailyLimit = "WAV2101"
)

// Error returns "CODE: message (HTTP status)", "HTTP status: message" without a code, or the
// transport failure. It starts with the code so dead letters sort by it.
func (e *Error) Error() string {
	switch {
	case e.Code != "":
		return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
	case e.Status != 0:
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	case e.permanent:
		// Refused before sending (unknown type, no sender): not a network failure.
		return "invalid: " + e.Message
	case e.Timeout:
		return "timeout: " + e.Message
	default:
		return "network: " + e.Message
	}
}

// Unwrap returns the transport error, if any.
func (e *Error) Unwrap() error { return e.cause }

// Label is the code when there is one, else "HTTP <status>", "invalid" (refused before
// sending), "timeout" or "network": the value wabulk logs as `code` and counts dead letters by.
func (e *Error) Label() string {
	switch {
	case e.Code != "":
		return e.Code
	case e.Status != 0:
		return "HTTP " + strconv.Itoa(e.Status)
	case e.permanent:
		return "invalid"
	case e.Timeout:
		return "timeout"
	default:
		return "network"
	}
}

// Retryable reports whether sending again later can succeed (the table of Kaleyra's answers in docs/guarantees.md): WA500, other
// 5xx, 429, no answer → yes; WAV2101 and every other 4xx → no.
func (e *Error) Retryable() bool {
	if e.permanent || e.Code == CodeDailyLimit {
		return false
	}
	switch {
	case e.Status == 0:
		return true
	case e.Status == http.StatusTooManyRequests, e.Status >= 500:
		return true
	default:
		return false
	}
}

// errorBody is the documented failure answer. data and error vary in shape ([] or {}), so
// error is decoded loosely.
type errorBody struct {
	Code    json.RawMessage `json:"code"`
	Message json.RawMessage `json:"message"`
	Error   json.RawMessage `json:"error"`
}

// ParseAnswer turns an answer into nil (2xx) or an *Error. An answer that is not the documented
// JSON (an HTML page from a proxy, empty, truncated, a 10 MB body cut to MaxAnswerBytes) is
// classified by its status alone.
func ParseAnswer(status int, h http.Header, body []byte) error {
	if status >= 200 && status < 300 {
		// WAV2101 may come with any status, 200 included. Only an answer that names it is
		// decoded here: every accepted message passes this way.
		if !bytes.Contains(body, []byte(CodeDailyLimit)) {
			return nil
		}
		if code, msg, fields, ok := decode(body); ok && code == CodeDailyLimit {
			return &Error{Status: status, Code: code, Message: msg, Fields: fields}
		}
		return nil
	}
	e := &Error{Status: status}
	if code, msg, fields, ok := decode(body); ok {
		e.Code, e.Message, e.Fields = code, msg, fields
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
		if e.Message == "" {
			e.Message = "unexpected status"
		}
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		e.RetryAfter = retryAfter(h.Get("Retry-After"), time.Now())
	}
	return e
}

func decode(body []byte) (code, msg string, fields map[string]string, ok bool) {
	var b errorBody
	if len(body) == 0 || json.Unmarshal(body, &b) != nil {
		return "", "", nil, false
	}
	code = clean(str(b.Code), 32)
	msg = clean(str(b.Message), 512)
	var m map[string]json.RawMessage
	if json.Unmarshal(b.Error, &m) == nil && len(m) > 0 {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fields = map[string]string{}
		for i, k := range keys {
			if i == 16 {
				break
			}
			fields[clean(k, 64)] = clean(str(m[k]), 512)
		}
	}
	return code, msg, fields, code != "" || msg != ""
}

// str reads a JSON string, or renders any other JSON value as its text.
func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return strings.TrimSpace(string(raw))
}

// clean makes text from the answer safe to put in an error and a log line: valid UTF-8, no
// control characters, at most n characters.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return strings.TrimSpace(s)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; capped at one hour.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		// Cap before multiplying: a huge value would overflow into a short or negative wait.
		d = time.Duration(min(max(secs, 0), 3600)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}
