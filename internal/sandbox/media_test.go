package sandbox_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/sandbox"
)

func mediaPath(sid, from string) string { return "/v2/" + sid + "/whatsapp/" + from + "/media" }

// form is a multipart upload body: the given parts in order, each a name and its content; a
// name "file" is sent as a file part.
func form(t *testing.T, parts ...[2]string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p[0] == "file" {
			w, err = mw.CreateFormFile("file", "a.bin")
		} else {
			w, err = mw.CreateFormField(p[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, p[1])
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

// upload posts a form to the media endpoint of from with key and returns the status and body.
func upload(t *testing.T, s *sandbox.Server, path, key, ctype string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-key", key)
	req.Header.Set("Content-Type", ctype)
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// uploadID uploads a small JPEG from from and returns the media id.
func uploadID(t *testing.T, s *sandbox.Server, key, from string) string {
	t.Helper()
	ct, body := form(t, [2]string{"type", "image/jpeg"}, [2]string{"file", "\xff\xd8\xff\xe0 a jpeg"})
	status, b := upload(t, s, mediaPath(sid, from), key, ct, body)
	var a struct {
		ID string `json:"id"`
	}
	if status != 200 || json.Unmarshal(b, &a) != nil || a.ID == "" {
		t.Fatalf("upload: %d %s", status, b)
	}
	return a.ID
}

// sendID sends an image by media id from from and returns the status and body.
func sendID(t *testing.T, s *sandbox.Server, key, from, id string) (int, string) {
	t.Helper()
	status, _, b := post(t, s, call{path: messagesPath(sid, from), key: &key,
		body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"id":"` + id + `"}`)})
	return status, string(b)
}

func TestUploadIssuesIDsTheSenderCanSend(t *testing.T) {
	const other = "919000000002"
	s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender, other}})
	id := uploadID(t, s, apiKey, sender)
	if !strings.HasPrefix(id, "sbx-") || len(id) > 128 {
		t.Errorf("id %q", id)
	}
	if id2 := uploadID(t, s, apiKey, sender); id2 == id {
		t.Errorf("two uploads got the same id %q", id)
	}
	if status, b := sendID(t, s, apiKey, sender, id); status != 200 {
		t.Fatalf("send by the issued id: %d %s", status, b)
	}
	// A media id belongs to the business number that uploaded it.
	if status, b := sendID(t, s, apiKey, other, id); status != 400 || !strings.Contains(b, `"media"`) {
		t.Errorf("send by another sender's id: %d %s, want 400 WA400 error.media", status, b)
	}
	// A send with an id never issued fails at once, without costing anything.
	s.SetBalance(5)
	status, b := sendID(t, s, apiKey, sender, "1234567890123456")
	if status != 400 || !strings.Contains(b, `"code":"WA400"`) || !strings.Contains(b, `"media"`) {
		t.Errorf("send by an unknown id: %d %s, want 400 WA400 error.media", status, b)
	}
	if got := s.Balance(); got != 5 {
		t.Errorf("balance %d after an unknown id, want 5", got)
	}
	// Sends by link are untouched.
	if status, _, b := post(t, s, call{body: msg(`"messaging_product":"whatsapp","to":"+919876543211","type":"image","image":{"link":"https://example.com/a.jpg"}`)}); status != 200 {
		t.Errorf("send by link: %d %s", status, b)
	}
	st := s.Stats()
	if st.Uploaded != 2 || st.Accepted != 2 || st.Answered[sandbox.AnswerUnknownMedia] != 2 {
		t.Errorf("stats %+v", st)
	}
	calls := s.Calls()
	if len(calls) != 4 || calls[0].MediaID != id || calls[0].Type != "image" || calls[0].Link || !calls[3].Link || calls[3].MediaID != "" {
		t.Errorf("calls %+v", calls)
	}
	ups := s.Uploads()
	if len(ups) != 2 || ups[0].ID != id || ups[0].From != sender || ups[0].Type != "image/jpeg" || ups[0].Size != 11 || ups[0].Answer != "ok" {
		t.Errorf("uploads %+v", ups)
	}
}

// Media outlives a sandbox process: another sandbox of the same account accepts the id (a
// campaign re-run reuses its cached id), a sandbox of another account does not.
func TestIssuedIDsHoldAcrossSandboxesOfOneAccount(t *testing.T) {
	first := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}})
	id := uploadID(t, first, apiKey, sender)
	first.Close()
	again := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}})
	if status, b := sendID(t, again, apiKey, sender, id); status != 200 {
		t.Errorf("same account, new sandbox: %d %s", status, b)
	}
	foreign := start(t, sandbox.Config{SID: sid, APIKey: "another-key", Senders: []string{sender}})
	if status, b := sendID(t, foreign, "another-key", sender, id); status != 400 {
		t.Errorf("another account: %d %s, want 400", status, b)
	}
}

func TestUploadChecks(t *testing.T) {
	webp := func(animated bool, size int) string {
		flags := byte(0)
		if animated {
			flags = 0x02
		}
		head := "RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00" + string([]byte{flags})
		return head + strings.Repeat("x", size-len(head))
	}
	ok := func(t *testing.T) (string, []byte) {
		return form(t, [2]string{"type", "image/png"}, [2]string{"file", "\x89PNG"})
	}
	for _, tc := range []struct {
		name   string
		path   string
		key    string
		body   func(t *testing.T) (string, []byte)
		cfg    sandbox.Config
		status int
		code   string
	}{
		{name: "a png is accepted", body: ok, status: 200},
		{name: "type after file is accepted", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"file", "%PDF-1.4"}, [2]string{"type", "application/pdf"})
		}, status: 200},
		{name: "wrong key is RBC001", key: "nope", body: ok, status: 401, code: "RBC001"},
		{name: "wrong SID is RBC001", path: mediaPath("other", sender), body: ok, status: 401, code: "RBC001"},
		{name: "foreign sender is WA401", path: mediaPath(sid, "919000000999"), body: ok, status: 401, code: "WA401"},
		{name: "a prepaid account is WA-401", cfg: sandbox.Config{Prepaid: true}, body: ok, status: 401, code: "WA-401"},
		{name: "not multipart is WA400", body: func(*testing.T) (string, []byte) { return "application/json", []byte(`{"file":"x"}`) }, status: 400, code: "WA400"},
		{name: "no boundary is WA400", body: func(*testing.T) (string, []byte) { return "multipart/form-data", []byte("x") }, status: 400, code: "WA400"},
		{name: "broken multipart is WA400", body: func(*testing.T) (string, []byte) {
			return "multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc")
		}, status: 400, code: "WA400"},
		{name: "no type is WA400", body: func(t *testing.T) (string, []byte) { return form(t, [2]string{"file", "x"}) }, status: 400, code: "WA400"},
		{name: "no file is WA400", body: func(t *testing.T) (string, []byte) { return form(t, [2]string{"type", "image/png"}) }, status: 400, code: "WA400"},
		{name: "an empty file is WA400", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/png"}, [2]string{"file", ""})
		}, status: 400, code: "WA400"},
		{name: "two files are WA400", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/png"}, [2]string{"file", "a"}, [2]string{"file", "b"})
		}, status: 400, code: "WA400"},
		{name: "gif is not a type WhatsApp takes", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/gif"}, [2]string{"file", "GIF89a"})
		}, status: 400, code: "WA400"},
		{name: "an image over 5 MB is WA400", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/jpeg"}, [2]string{"file", strings.Repeat("x", 5_000_001)})
		}, status: 400, code: "WA400"},
		{name: "an image of 5 MB is accepted", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/jpeg"}, [2]string{"file", strings.Repeat("x", 5_000_000)})
		}, status: 200},
		{name: "a static sticker over 100 KB is WA400", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/webp"}, [2]string{"file", webp(false, 100_001)})
		}, status: 400, code: "WA400"},
		{name: "an animated sticker of 500 KB is accepted", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/webp"}, [2]string{"file", webp(true, 500_000)})
		}, status: 200},
		{name: "an animated sticker over 500 KB is WA400", body: func(t *testing.T) (string, []byte) {
			return form(t, [2]string{"type", "image/webp"}, [2]string{"file", webp(true, 500_001)})
		}, status: 400, code: "WA400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.SID, cfg.APIKey, cfg.Senders = sid, apiKey, []string{sender}
			s := start(t, cfg)
			if tc.path == "" {
				tc.path = mediaPath(sid, sender)
			}
			if tc.key == "" {
				tc.key = apiKey
			}
			ct, body := tc.body(t)
			status, b := upload(t, s, tc.path, tc.key, ct, body)
			var a struct {
				ID   string `json:"id"`
				Code string `json:"code"`
			}
			json.Unmarshal(b, &a)
			if status != tc.status || a.Code != tc.code || (status == 200) != (a.ID != "") {
				t.Fatalf("%d %s, want %d %q", status, b, tc.status, tc.code)
			}
			if st := s.Stats(); st.Uploaded != int64(map[bool]int{true: 1}[status == 200]) {
				t.Errorf("uploaded %d", st.Uploaded)
			}
		})
	}
}

func TestUploadScriptsAndControl(t *testing.T) {
	s := start(t, sandbox.Config{})
	c := client(t)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/_sandbox/script", strings.NewReader(`{"upload":true,"answers":["WA500","noid200"]}`))
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("script: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := s.ScriptUploads("nope"); err == nil {
		t.Error("an unknown upload answer was scripted")
	}
	var got []string
	for range 3 {
		ct, body := form(t, [2]string{"type", "audio/mpeg"}, [2]string{"file", "ID3"})
		status, b := upload(t, s, mediaPath(sid, sender), apiKey, ct, body)
		got = append(got, fmt.Sprintf("%d %s", status, b))
	}
	if !strings.HasPrefix(got[0], "500 ") || !strings.Contains(got[0], "WA500") || got[1] != `200 {"messaging_product":"whatsapp","status":"uploaded"}` ||
		!strings.HasPrefix(got[2], `200 {"id":"sbx-`) {
		t.Errorf("answers %q", got)
	}
	resp, err = c.Get(s.URL + "/_sandbox/uploads")
	if err != nil {
		t.Fatal(err)
	}
	var ups []sandbox.Upload
	err = json.NewDecoder(resp.Body).Decode(&ups)
	resp.Body.Close()
	if err != nil || len(ups) != 3 || ups[0].Answer != "WA500" || ups[1].Answer != "noid200" || ups[2].ID == "" {
		t.Errorf("GET /_sandbox/uploads: %+v %v", ups, err)
	}
	s.Reset()
	if len(s.Uploads()) != 0 || s.Stats().Uploaded != 0 {
		t.Error("reset kept the upload log")
	}
}

// The unknown-media answer can be scripted like any other, for a send by a known id too.
func TestUnknownMediaCanBeScripted(t *testing.T) {
	s := start(t, sandbox.Config{})
	if err := s.Script(to, sandbox.AnswerUnknownMedia); err != nil {
		t.Fatal(err)
	}
	status, _, b := post(t, s, call{body: msg(okFields)})
	if status != 400 || !strings.Contains(string(b), `"media"`) {
		t.Errorf("%d %s", status, b)
	}
}
