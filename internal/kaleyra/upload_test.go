package kaleyra_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/sandbox"
)

// jpeg is a small file the upload tests send.
var jpeg = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00 a small picture")

func jpegMedia() kaleyra.Media {
	return kaleyra.Media{Name: "a.jpg", Type: "image/jpeg", Body: bytes.NewReader(jpeg), Size: int64(len(jpeg))}
}

// uploadClient is a client of the test account with short timeouts whose answer bodies are
// counted as they are read.
func uploadClient(t *testing.T, base string, read *atomic.Int64) *kaleyra.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	if read != nil {
		rt = countingTransport{tr, read}
	}
	c, err := kaleyra.New(kaleyra.Config{SID: testSID, APIKey: testKey, BaseURL: base,
		HTTPClient: &http.Client{Transport: rt, Timeout: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type countingTransport struct {
	rt   http.RoundTripper
	read *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		resp.Body = countingBody{resp.Body, c.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	read *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func TestUploadPinsTheRequest(t *testing.T) {
	var got struct {
		method, path, key, ctype, typ, name, partType string
		file                                          []byte
	}
	srv, seen := recorder(t, 200, `{"id":"1095582791498432"}`)
	c := newClient(t, srv.URL, time.Second)
	id, err := c.Upload(context.Background(), "+91 90000 00001", kaleyra.Media{Name: `../dir/x"y.jpg`, Type: "image/jpeg",
		Body: io.MultiReader(bytes.NewReader(jpeg), strings.NewReader("not sent")), Size: int64(len(jpeg))})
	if err != nil || id != "1095582791498432" {
		t.Fatalf("Upload = %q, %v", id, err)
	}
	r := <-seen
	got.method, got.path, got.key = r.method, r.path, r.key
	mt, params, err := mime.ParseMediaType(r.ctype)
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type %q", r.ctype)
	}
	mr := multipart.NewReader(strings.NewReader(r.body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("form: %v", err)
		}
		b, _ := io.ReadAll(p)
		switch p.FormName() {
		case "type":
			got.typ = string(b)
		case "file":
			got.name, got.partType, got.file = p.FileName(), p.Header.Get("Content-Type"), b
		default:
			t.Errorf("unexpected part %q", p.FormName())
		}
	}
	if got.method != "POST" || got.path != "/v2/"+testSID+"/whatsapp/919000000001/media" || got.key != testKey {
		t.Errorf("request %s %s key %q", got.method, got.path, got.key)
	}
	if got.typ != "image/jpeg" || got.partType != "image/jpeg" || got.name != "x_y.jpg" || !bytes.Equal(got.file, jpeg) {
		t.Errorf("form: type %q, part type %q, name %q, file %q", got.typ, got.partType, got.name, got.file)
	}
}

func TestUploadAgainstSandbox(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Balance: -1})
	c := newClient(t, s.URL, time.Second)
	id, err := c.Upload(context.Background(), sandboxSender, jpegMedia())
	if err != nil || !strings.HasPrefix(id, "sbx-") {
		t.Fatalf("Upload = %q, %v", id, err)
	}
	ups := s.Uploads()
	if len(ups) != 1 || ups[0].From != sandboxSender || ups[0].Type != "image/jpeg" || ups[0].Size != int64(len(jpeg)) || ups[0].ID != id {
		t.Errorf("sandbox saw %+v", ups)
	}
	res, err := c.Send(context.Background(), sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: id})
	if err != nil || res.MessageID == "" {
		t.Fatalf("send by the uploaded id: %+v %v", res, err)
	}
	_, err = c.Send(context.Background(), sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "4242"})
	var e *kaleyra.Error
	if !errors.As(err, &e) || e.Code != kaleyra.CodeBadPayload || e.Retryable() || e.Fields["media"] == "" {
		t.Errorf("send by an id never uploaded: %v, want a permanent WA400 about the media", err)
	}
}

// Every documented answer to an upload comes back as the client reads that documented body.
func TestUploadDocumentedAnswers(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Balance: -1})
	c := newClient(t, s.URL, time.Second)
	checkDocumentedAnswers(t, func(name string) error { return s.ScriptUploads(name) }, func() error {
		_, err := c.Upload(context.Background(), sandboxSender, jpegMedia())
		return err
	})
}

func TestUploadFaultsAndChecks(t *testing.T) {
	type want struct {
		status  int
		code    string
		retry   bool
		timeout bool
	}
	for _, tc := range []struct {
		name    string
		cfg     sandbox.Config
		answer  string
		from    string
		media   func() kaleyra.Media
		want    want
		message string // a substring of the error
	}{
		{name: "WA500 is transient", answer: "WA500", want: want{500, "WA500", true, false}},
		{name: "429 is transient", answer: "429", want: want{429, "", true, false}},
		{name: "HTML 502 is transient", answer: "html502", want: want{502, "", true, false}},
		{name: "a 10 MB 500 is transient and read by its status", answer: "big", want: want{500, "", true, false}},
		{name: "hang is a timeout", answer: "hang", want: want{0, "", true, true}},
		{name: "reset is a network error", answer: "reset", want: want{0, "", true, false}},
		{name: "an answer without an id says what came back", answer: "noid200", want: want{200, "", false, false},
			message: `names no media id: "{\"messaging_product\":\"whatsapp\",\"status\":\"uploaded\"}"`},
		{name: "a 200 that is not JSON says what came back", answer: "garbage200", want: want{200, "", false, false},
			message: "is not the JSON object"},
		{name: "a 10 MB 200 is cut, not read whole", answer: "big200", want: want{200, "", false, false},
			message: `is not the JSON object {"id": …}: "{\"id\":\"xxxxxxxx`},
		{name: "a foreign sender is WA401", from: "919000000999", want: want{401, "WA401", false, false}},
		{name: "a prepaid account is WA-401", cfg: sandbox.Config{Prepaid: true}, want: want{401, "WA-401", false, false}},
		{name: "a type WhatsApp does not take is WA400", want: want{400, "WA400", false, false},
			media: func() kaleyra.Media {
				return kaleyra.Media{Type: "image/gif", Body: strings.NewReader("GIF89a"), Size: 6}
			}},
		{name: "an image over 5 MB is WA400", want: want{400, "WA400", false, false},
			media: func() kaleyra.Media {
				return kaleyra.Media{Type: "image/png", Body: bytes.NewReader(make([]byte, 5_000_001)), Size: 5_000_001}
			}},
		{name: "a file shorter than its size is a network error, not a short upload", want: want{0, "", true, false},
			media: func() kaleyra.Media {
				return kaleyra.Media{Type: "image/png", Body: strings.NewReader("abc"), Size: 10}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Balance, tc.cfg.HangFor = -1, time.Minute
			s := startSandbox(t, tc.cfg)
			if tc.answer != "" {
				if err := s.ScriptUploads(tc.answer); err != nil {
					t.Fatal(err)
				}
			}
			if tc.from == "" {
				tc.from = sandboxSender
			}
			if tc.media == nil {
				tc.media = jpegMedia
			}
			var read atomic.Int64
			c := uploadClient(t, s.URL, &read)
			start := time.Now()
			_, err := c.Upload(context.Background(), tc.from, tc.media())
			var e *kaleyra.Error
			if !errors.As(err, &e) {
				t.Fatalf("%v: want *kaleyra.Error", err)
			}
			if got := (want{e.Status, e.Code, e.Retryable(), e.Timeout}); got != tc.want {
				t.Errorf("got %+v, want %+v (%v)", got, tc.want, err)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q lacks %q", err, tc.message)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("error of %d bytes: answers must be cut short", len(err.Error()))
			}
			// Answer, plus the drain that lets the connection be reused: never the 10 MB.
			if n := read.Load(); n > kaleyra.MaxAnswerBytes+1<<20 {
				t.Errorf("read %d bytes of the answer", n)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			// An upload that failed issued no id.
			if st := s.Stats(); st.Uploaded != 0 {
				t.Errorf("sandbox issued %d ids", st.Uploaded)
			}
		})
	}
}

func TestUploadRefusesWhatCannotBeSent(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1", time.Second)
	for _, tc := range []struct {
		name string
		from string
		m    kaleyra.Media
	}{
		{"no sender", "", jpegMedia()},
		{"no type", sandboxSender, kaleyra.Media{Body: strings.NewReader("x"), Size: 1}},
		{"a type with a line break", sandboxSender, kaleyra.Media{Type: "image/png\r\nX: y", Body: strings.NewReader("x"), Size: 1}},
		{"an empty file", sandboxSender, kaleyra.Media{Type: "image/png", Body: strings.NewReader(""), Size: 0}},
		{"no body", sandboxSender, kaleyra.Media{Type: "image/png", Size: 1}},
	} {
		_, err := c.Upload(context.Background(), tc.from, tc.m)
		var e *kaleyra.Error
		if !errors.As(err, &e) || e.Retryable() || e.Label() != "invalid" {
			t.Errorf("%s: %v, want a permanent invalid error", tc.name, err)
		}
	}
}

func TestUploadAnswerEchoingTheKeyIsRedacted(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
	}{
		{401, `{"code":"RBC001","message":"Incorrect SID or API key ` + testKey + `.","data":[],"error":{"error":"bad key ` + testKey + `"}}`},
		{200, `{"key":"` + testKey + `"}`},
		{200, `not json ` + testKey},
	} {
		srv, _ := recorder(t, tc.status, tc.body)
		_, err := newClient(t, srv.URL, time.Second).Upload(context.Background(), sandboxSender, jpegMedia())
		var ke *kaleyra.Error
		if !errors.As(err, &ke) {
			t.Fatalf("err = %v", err)
		}
		if text := fmt.Sprintf("%v %+v %#v", err, ke, ke.Fields); strings.Contains(text, "SECRET") {
			t.Errorf("the key leaks through the answer: %s", text)
		}
	}
}

func TestParseMediaID(t *testing.T) {
	for _, tc := range []struct {
		body, id string
	}{
		{`{"id":"1095582791498432"}`, "1095582791498432"},
		{`{"id": "abc-DEF_1.2", "messaging_product": "whatsapp"}`, "abc-DEF_1.2"},
		{`{"ID":"1"}`, ""},
		{`{"id":1095582791498432}`, ""},
		{`{"id":""}`, ""},
		{`{"id":"a b"}`, ""},
		{`{"id":"a\u0000"}`, ""},
		{`{"data":{"id":"1"}}`, ""},
		{`["1"]`, ""},
		{``, ""},
		{`{"id":"` + strings.Repeat("9", kaleyra.MaxMediaIDBytes+1) + `"}`, ""},
	} {
		id, err := kaleyra.ParseMediaID([]byte(tc.body))
		if id != tc.id || (err == nil) != (tc.id != "") {
			t.Errorf("ParseMediaID(%s) = %q, %v; want %q", tc.body, id, err, tc.id)
		}
	}
}

// FuzzParseMediaID: any answer gives either an id that is printable ASCII within the limit, or
// an error of bounded length; never a panic.
func FuzzParseMediaID(f *testing.F) {
	for _, s := range []string{`{"id":"1095582791498432"}`, `{"id":1}`, `{"id":"a","id":"b"}`, `{"id":"\u00e9"}`, "\xff", `{"id":"` + strings.Repeat("x", 300) + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := kaleyra.ParseMediaID(b)
		if err != nil {
			if id != "" || len(err.Error()) > 1200 {
				t.Fatalf("id %q with error %v", id, err)
			}
			return
		}
		if id == "" || len(id) > kaleyra.MaxMediaIDBytes || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			t.Fatalf("id %q", id)
		}
	})
}
