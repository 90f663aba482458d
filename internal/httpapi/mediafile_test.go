package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
)

const (
	mediaSID     = "media-api-sid"
	mediaKey     = "media-api-key-0123"
	secondSender = "+919000000002"
)

var jpegFile = "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01 a picture of shoes"

// part is one part of a multipart body: a field, or a file when filename is set.
type part struct {
	name, filename, ctype, content string
}

// form builds a multipart body of parts and returns its Content-Type.
func form(t *testing.T, parts ...part) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		cd := `form-data; name="` + p.name + `"`
		if p.filename != "" {
			cd += `; filename="` + p.filename + `"`
		}
		h.Set("Content-Disposition", cd)
		if p.ctype != "" {
			h.Set("Content-Type", p.ctype)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, p.content)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

func jsonCampaign(body string) part {
	return part{name: "campaign", ctype: "application/json", content: body}
}
func mediaFile(name, content string) part {
	return part{name: "media_file", filename: name, ctype: "application/octet-stream", content: content}
}

// mediaEnv is an API with a sandbox of its Kaleyra account (two senders) and a temp dir of its own.
type mediaEnv struct {
	*env
	sb  *sandbox.Server
	tmp string
}

func setupMedia(t *testing.T, change ...func(*Config)) *mediaEnv {
	t.Helper()
	sb, err := sandbox.Start(sandbox.Config{SID: mediaSID, APIKey: mediaKey, Senders: []string{testkit.Sender, secondSender}, Balance: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	tmp := t.TempDir()
	e := setup(t, append([]func(*Config){func(c *Config) {
		c.Kaleyra = kaleyra.Config{SID: mediaSID, APIKey: mediaKey, BaseURL: sb.URL}
		c.TempDir = tmp
	}}, change...)...)
	return &mediaEnv{env: e, sb: sb, tmp: tmp}
}

func (e *mediaEnv) post(path string, parts ...part) resp {
	e.t.Helper()
	ct, body := form(e.t, parts...)
	return e.do("POST", path, ct, bytes.NewReader(body))
}

// nothingWritten checks that no job and no upload came of a request, and that no spooled file
// is left.
func (e *mediaEnv) nothingWritten(t *testing.T) {
	t.Helper()
	if keys := e.rs.Client(t).Keys(context.Background(), "asynq:*").Val(); len(keys) != 0 {
		t.Errorf("jobs were enqueued: %v", keys)
	}
	if ups := e.sb.Uploads(); len(ups) != 0 {
		t.Errorf("%d uploads", len(ups))
	}
	if left, _ := os.ReadDir(e.tmp); len(left) != 0 {
		t.Errorf("%d spooled files left", len(left))
	}
}

func (e *mediaEnv) payload(t *testing.T, campaign, sender, to string) job.Payload {
	t.Helper()
	ln := store.New(nil, testQueue, time.Hour).LaneName(campaign, sender)
	ti, err := e.insp.GetTaskInfo(ln, campaign+":"+strings.TrimPrefix(sender, "+")+":"+strings.TrimPrefix(to, "+"))
	if err != nil {
		t.Fatalf("task of %s: %v", to, err)
	}
	p, err := job.Decode(ti.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPostCampaignWithAMediaFile(t *testing.T) {
	e := setupMedia(t)
	camp := `{"campaign":"shoes","defaults":{"caption":"New shoes"},"recipients":[{"to":"+919812345601"},{"to":"+919812345602","ref":"b"},` +
		`{"to":"+919812345603","media_link":"https://example.com/own.jpg"}]}`
	a := e.post("/v1/campaigns", jsonCampaign(camp), mediaFile("shoes.jpg", jpegFile)).accepted(t)
	if a.Enqueued != 3 || a.Media == nil || len(a.Media.Senders) != 1 || !a.Media.Senders[0].Uploaded ||
		a.Media.File.MIME != "image/jpeg" || a.Media.File.Name != "shoes.jpg" {
		t.Fatalf("answer %+v media %+v", a.Summary, a.Media)
	}
	id := a.Media.Senders[0].MediaID
	if ups := e.sb.Uploads(); len(ups) != 1 || ups[0].ID != id || ups[0].Type != "image/jpeg" {
		t.Fatalf("uploads %+v", ups)
	}
	for _, to := range []string{"+919812345601", "+919812345602"} {
		if p := e.payload(t, "shoes", testkit.Sender, to); p.MediaID != id || p.MediaLink != "" || p.Type != "image" || p.Caption != "New shoes" {
			t.Errorf("job %+v, want image %s", p, id)
		}
	}
	if p := e.payload(t, "shoes", testkit.Sender, "+919812345603"); p.MediaLink != "https://example.com/own.jpg" || p.MediaID != "" {
		t.Errorf("a recipient's own link was replaced: %+v", p)
	}
	if left, _ := os.ReadDir(e.tmp); len(left) != 0 {
		t.Errorf("%d spooled files left", len(left))
	}

	// Posted again, file first this time: duplicates, and the cached id, no upload.
	again := e.post("/v1/campaigns", mediaFile("shoes.jpg", jpegFile), jsonCampaign(camp)).accepted(t)
	if again.Duplicates != 3 || again.Media.Senders[0].Uploaded || again.Media.Senders[0].MediaID != id || len(e.sb.Uploads()) != 1 {
		t.Errorf("re-post: %+v media %+v, %d uploads", again.Summary, again.Media, len(e.sb.Uploads()))
	}

	// A CSV campaign part with its id and defaults in the query; another sender uploads its own.
	csv := "to,from\n+919812345611,\n+919812345612," + secondSender + "\n"
	c := e.post("/v1/campaigns?campaign=shoes-csv&caption=hi", part{name: "campaign", ctype: "text/csv", content: csv},
		mediaFile("x.bin", jpegFile)).accepted(t)
	if c.Enqueued != 2 || len(c.Media.Senders) != 2 || c.Media.Senders[0].Uploaded || !c.Media.Senders[1].Uploaded ||
		c.Media.Senders[1].Sender != secondSender || len(e.sb.Uploads()) != 2 {
		t.Fatalf("CSV part: %+v media %+v", c.Summary, c.Media)
	}
	if p := e.payload(t, "shoes-csv", secondSender, "+919812345612"); p.MediaID != c.Media.Senders[1].MediaID || p.Caption != "hi" {
		t.Errorf("second sender's job %+v", p)
	}
	// A JSONL part.
	d := e.post("/v1/campaigns?campaign=shoes-nd", part{name: "campaign", ctype: "application/x-ndjson", content: `{"to":"+919812345621"}` + "\n"},
		mediaFile("x.jpg", jpegFile)).accepted(t)
	if d.Enqueued != 1 || d.Media.Senders[0].MediaID != id {
		t.Errorf("JSONL part: %+v media %+v", d.Summary, d.Media)
	}
}

// Every hostile, malformed or oversized multipart body is a clear 4xx, and nothing comes of it:
// no upload, no job, no file left on disk.
func TestPostCampaignMediaFileRefusals(t *testing.T) {
	valid := jsonCampaign(`{"campaign":"c","recipients":[{"to":"+919812345601"}]}`)
	jpg := mediaFile("a.jpg", jpegFile)
	raw := func(ctype, body string) func(*testing.T) (string, []byte) {
		return func(*testing.T) (string, []byte) { return ctype, []byte(body) }
	}
	parts := func(ps ...part) func(*testing.T) (string, []byte) {
		return func(t *testing.T) (string, []byte) { return form(t, ps...) }
	}
	manyCSV := "to\n" + strings.Repeat("+919812345601\n", 51)
	for _, tc := range []struct {
		name   string
		path   string
		body   func(*testing.T) (string, []byte)
		status int
		code   string
		detail string
	}{
		{name: "no boundary", body: raw("multipart/form-data", "--x\r\n"), status: 400, code: CodeBadMultipart, detail: "boundary"},
		{name: "not multipart inside", body: raw("multipart/form-data; boundary=b", "just text"), status: 400, code: CodeBadMultipart},
		{name: "cut off before its end", status: 400, code: CodeBadMultipart, body: raw("multipart/form-data; boundary=b",
			"--b\r\nContent-Disposition: form-data; name=\"campaign\"\r\nContent-Type: application/json\r\n\r\n{\"campaign\":\"c\"")},
		{name: "a part header that never ends", status: 400, code: CodeBadMultipart, body: raw("multipart/form-data; boundary=b",
			"--b\r\nContent-Disposition: form-data; name=\"media_file\"\r\n"+strings.Repeat("X-A: b\r\n", 100))},
		{name: "no campaign part", body: parts(jpg), status: 400, code: CodeBadMultipart, detail: "no campaign part"},
		{name: "no media_file part", body: parts(valid), status: 400, code: CodeBadMultipart, detail: "no media_file part"},
		{name: "an empty body", body: parts(), status: 400, code: CodeBadMultipart},
		{name: "campaign twice", body: parts(valid, valid, jpg), status: 400, code: CodeBadMultipart, detail: "given twice"},
		{name: "media_file twice", body: parts(jpg, jpg, valid), status: 400, code: CodeBadMultipart, detail: "given twice"},
		{name: "an unknown part", body: parts(valid, part{name: "../../etc/passwd", content: "x"}, jpg), status: 400, code: CodeBadMultipart, detail: "unknown part"},
		{name: "a part without a name", body: parts(part{content: "x"}, valid, jpg), status: 400, code: CodeBadMultipart, detail: "unknown part"},
		{name: "a third part", body: parts(valid, jpg, part{name: "extra", content: "x"}), status: 400, code: CodeBadMultipart, detail: "more than 2 parts"},
		{name: "a campaign part without a type", body: parts(part{name: "campaign", content: `{"campaign":"c"}`}, jpg), status: 415, code: CodeUnsupportedMediaType},
		{name: "a campaign part of another type", body: parts(part{name: "campaign", ctype: "multipart/mixed; boundary=z", content: "--z--"}, jpg),
			status: 415, code: CodeUnsupportedMediaType},
		{name: "malformed campaign JSON", body: parts(jsonCampaign(`{"campaign":`), jpg), status: 400, code: CodeBadJSON},
		{name: "a key twice in the campaign JSON", body: parts(jsonCampaign(`{"campaign":"c","CAMPAIGN":"d","recipients":[{"to":"+919812345601"}]}`), jpg),
			status: 400, code: CodeBadJSON},
		{name: "a CSV part without ?campaign", body: parts(part{name: "campaign", ctype: "text/csv", content: "to\n+919812345601\n"}, jpg),
			status: 400, code: CodeInvalidRequest},
		{name: "a CSV part without a to column", path: "/v1/campaigns?campaign=c", body: parts(part{name: "campaign", ctype: "text/csv", content: "phone\n1\n"}, jpg),
			status: 400, code: CodeInvalidRequest, detail: "nothing was uploaded or enqueued"},
		{name: "a default link beside the file", body: parts(jsonCampaign(`{"campaign":"c","defaults":{"media_link":"https://example.com/a.jpg"},"recipients":[{"to":"+919812345601"}]}`), jpg),
			status: 400, code: CodeInvalidRequest, detail: "give one"},
		{name: "a default type the file is not", body: parts(jsonCampaign(`{"campaign":"c","defaults":{"type":"video"},"recipients":[{"to":"+919812345601"}]}`), jpg),
			status: 400, code: CodeInvalidRequest, detail: "sent as image"},
		{name: "a gif", body: parts(valid, mediaFile("a.gif", "GIF89a\x01\x00\x01\x00....")), status: 415, code: CodeUnsupportedMediaFile,
			detail: "a.gif is image/gif, a type WhatsApp does not take"},
		{name: "an empty file", body: parts(valid, mediaFile("a.jpg", "")), status: 400, code: CodeBadMultipart, detail: "empty"},
		{name: "a picture over 5 MB", body: parts(valid, mediaFile("big.jpg", jpegFile+strings.Repeat("x", 5_000_000))), status: 413, code: CodeMediaTooLarge,
			detail: "over the 5,000,000 bytes (5 MB) WhatsApp takes for an image (image/jpeg)"},
		{name: "a file over --max-media", body: parts(valid, mediaFile("big.pdf", "%PDF-1.4\n"+strings.Repeat("x", 6_000_000))), status: 413, code: CodeMediaTooLarge,
			detail: "over 5500000 bytes"},
		{name: "a campaign part over --max-body", body: parts(jsonCampaign(`{"campaign":"c","recipients":[{"to":"+919812345601","ref":"`+strings.Repeat("r", 70<<10)+`"}]}`), jpg),
			status: 413, code: CodeBodyTooLarge},
		{name: "a CSV part over --max-body", path: "/v1/campaigns?campaign=c", body: parts(part{name: "campaign", ctype: "text/csv", content: "to,ref\n+919812345601," + strings.Repeat("r", 70<<10) + "\n"}, jpg),
			status: 413, code: CodeBodyTooLarge},
		{name: "a body over its limit in the preamble", body: raw("multipart/form-data; boundary=b", strings.Repeat(strings.Repeat("p", 998)+"\r\n", 5_700)),
			status: 413, code: CodeBodyTooLarge},
		{name: "a preamble line too long to read", body: raw("multipart/form-data; boundary=b", strings.Repeat("p", 1<<20)),
			status: 400, code: CodeBadMultipart},
		{name: "too many recipients", path: "/v1/campaigns?campaign=c", body: parts(part{name: "campaign", ctype: "text/csv", content: manyCSV}, jpg),
			status: 413, code: CodeTooManyRecipients, detail: "nothing was uploaded or enqueued"},
		{name: "a file path as its name", body: parts(valid, mediaFile("../../../../tmp/evil.gif", "GIF89a\x01\x00\x01\x00....")), status: 415,
			code: CodeUnsupportedMediaFile, detail: "evil.gif is image/gif"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setupMedia(t, func(c *Config) { c.MaxMediaBytes = 5_500_000 })
			if tc.path == "" {
				tc.path = "/v1/campaigns"
			}
			ct, body := tc.body(t)
			r := e.do("POST", tc.path, ct, bytes.NewReader(body))
			if r.code != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.code, tc.status, r.body)
			}
			if p := r.problem(t); p.Code != tc.code || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("problem %s %q, want %s with %q", p.Code, p.Detail, tc.code, tc.detail)
			}
			e.nothingWritten(t)
		})
	}
}

func TestPostCampaignMediaFileUploadFailureEnqueuesNothing(t *testing.T) {
	e := setupMedia(t)
	// The second sender's upload fails (a prepaid account would fail the first): nothing is
	// enqueued for the first one either.
	camp := `{"campaign":"c","recipients":[{"to":"+919812345601"},{"to":"+919812345602","from":"+919000000003"}]}`
	r := e.post("/v1/campaigns", jsonCampaign(camp), mediaFile("a.jpg", jpegFile))
	if r.code != http.StatusBadGateway {
		t.Fatalf("status %d; body %s", r.code, r.body)
	}
	if p := r.problem(t); p.Code != CodeMediaUploadFailed || !strings.Contains(p.Detail, "WA401") || strings.Contains(p.Detail, mediaKey) {
		t.Errorf("problem %+v", p)
	}
	if keys := e.rs.Client(t).Keys(context.Background(), "asynq:*").Val(); len(keys) != 0 {
		t.Errorf("jobs were enqueued: %v", keys)
	}
	if left, _ := os.ReadDir(e.tmp); len(left) != 0 {
		t.Errorf("%d spooled files left", len(left))
	}
}

func TestPostCampaignMediaFileWithoutAKaleyraAccountIs501(t *testing.T) {
	e := setup(t)
	ct, body := form(t, jsonCampaign(`{"campaign":"c","recipients":[{"to":"+919812345601"}]}`), mediaFile("a.jpg", jpegFile))
	r := e.do("POST", "/v1/campaigns", ct, bytes.NewReader(body))
	if r.code != http.StatusNotImplemented {
		t.Fatalf("status %d; body %s", r.code, r.body)
	}
	if p := r.problem(t); p.Code != CodeMediaUnavailable || !strings.Contains(p.Detail, "wabulk media upload") {
		t.Errorf("problem %+v", p)
	}
	if n, err := e.srv.ops.QueueCounts(""); err != nil || n.Pending != 0 {
		t.Errorf("%d pending (%v)", n.Pending, err)
	}
}

// FuzzMultipartBody: whatever the body, reading it gives a campaign and a checked file, or a
// *bodyError with a 4xx status; no spooled file outlives the request.
func FuzzMultipartBody(f *testing.F) {
	good := func(parts ...part) []byte {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.SetBoundary("b")
		for _, p := range parts {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="`+p.name+`"; filename="`+p.filename+`"`)
			if p.ctype != "" {
				h.Set("Content-Type", p.ctype)
			}
			w, _ := mw.CreatePart(h)
			io.WriteString(w, p.content)
		}
		mw.Close()
		return b.Bytes()
	}
	f.Add(good(jsonCampaign(`{"campaign":"c","recipients":[{"to":"+919812345601"}]}`), mediaFile("a.jpg", jpegFile)))
	f.Add(good(part{name: "campaign", ctype: "text/csv", content: "to\n+919812345601\n"}, mediaFile("a.gif", "GIF89a")))
	f.Add(good(mediaFile("a.jpg", jpegFile), mediaFile("a.jpg", jpegFile)))
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"campaign\"\r\n\r\n{"))
	f.Add([]byte("--b--\r\n"))
	tmp := f.TempDir()
	srv, err := New(Config{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, InsecureNoAuth: true, TempDir: tmp,
		Kaleyra: kaleyra.Config{SID: mediaSID, APIKey: mediaKey, BaseURL: "http://127.0.0.1:1"}, MaxBodyBytes: 4 << 10, MaxMediaBytes: 4 << 10}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v1/campaigns?campaign=c", bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
		rec := httptest.NewRecorder()
		req.Body = http.MaxBytesReader(rec, req.Body, srv.cfg.MaxBodyBytes+srv.cfg.MaxMediaBytes+multipartSlack)
		camp, file, err := srv.readMultipart(rec, req)
		if file != nil {
			file.Close()
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Fatalf("%d spooled files left", len(left))
		}
		if err != nil {
			var be *bodyError
			if !errors.As(err, &be) || be.status < 400 || be.status > 499 || be.code == "" || be.msg == "" {
				t.Fatalf("error %v (%T)", err, err)
			}
			return
		}
		if camp == nil || camp.rows == nil || file == nil || file.SHA256 == "" || file.Kind == "" {
			t.Fatalf("no error, but campaign %+v file %+v", camp, file)
		}
	})
}
