package kaleyra

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path/filepath"
	"strings"
)

// Media is one file to upload to the Upload Media Files API.
type Media struct {
	// Name is the file name the form gives Kaleyra (its base name, printable ASCII; "file" when
	// nothing is left).
	Name string
	// Type is the MIME type (image/jpeg), sent as the form's type field and as the file part's
	// Content-Type.
	Type string
	// Body is the content; exactly Size bytes are read from it.
	Body io.Reader
	// Size is the content's length in bytes.
	Size int64
}

// MaxMediaIDBytes is the longest media id ParseMediaID takes.
const MaxMediaIDBytes = 256

// MediaURL returns the upload endpoint for business number from (digits only, as in URL).
func (c *Client) MediaURL(from string) string {
	return c.base + "/v2/" + url.PathEscape(c.sid) + "/whatsapp/" + digits(from) + "/media"
}

// Account names the Kaleyra account the client talks to: its endpoint and SID, never the key.
// A media id is only good on the account (and from the sender) that uploaded it, so a cache of
// ids is keyed by it.
func (c *Client) Account() string { return c.base + "/v2/" + c.sid }

// Upload posts m as the multipart form the Upload Media Files API takes (file, type) for the
// business number from, which will send it, and returns the media id of the answer. Its errors
// are those of Send: an *Error from Kaleyra's answer (Retryable says whether trying again can
// help), an *Error with Status 0 when no answer came, and an *Error of status 2xx when the
// answer is not Meta's {"id": "…"} (it quotes what came back, cut short). The file is streamed,
// never held in memory; the call is bounded by Config.UploadTimeout and ctx.
func (c *Client) Upload(ctx context.Context, from string, m Media) (string, error) {
	if digits(from) == "" {
		return "", &Error{Message: "kaleyra: sender number is empty", permanent: true}
	}
	if m.Type == "" || strings.ContainsAny(m.Type, "\r\n") || m.Body == nil || m.Size <= 0 {
		return "", &Error{Message: "kaleyra: an upload needs a MIME type and a non-empty file", permanent: true}
	}
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	if err := mw.WriteField("type", m.Type); err != nil {
		return "", &Error{Message: "kaleyra: build form: " + err.Error(), permanent: true}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", multipart.FileContentDisposition("file", formName(m.Name)))
	h.Set("Content-Type", m.Type)
	if _, err := mw.CreatePart(h); err != nil {
		return "", &Error{Message: "kaleyra: build form: " + err.Error(), permanent: true}
	}
	// What mw.Close would write after the file: the closing boundary.
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	body := io.MultiReader(&head, &exactly{r: m.Body, left: m.Size}, strings.NewReader(tail))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.MediaURL(from), body)
	if err != nil {
		return "", &Error{Message: "kaleyra: build request: " + err.Error(), permanent: true}
	}
	// A known length: the upload is not chunked. A file shorter than Size fails the body's read
	// before the closing boundary is written, so Kaleyra never gets a complete form with a
	// truncated file.
	req.ContentLength = int64(head.Len()) + m.Size + int64(len(tail))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("api-key", string(c.key))
	req.Header.Set("cache-control", "no-cache")
	resp, err := c.upload.Do(req)
	if err != nil {
		return "", c.redact(transportError(err))
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}()
	answer, rerr := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if len(c.key) >= 4 {
		// Before the answer is quoted in an error, where escaping could hide the key from redact.
		answer = bytes.ReplaceAll(answer, []byte(c.key), []byte("[redacted]"))
	}
	if resp.StatusCode/100 != 2 {
		return "", c.redact(ParseAnswer(resp.StatusCode, resp.Header, answer))
	}
	if rerr != nil {
		// Accepted, but the id broke off with the answer: uploading again is harmless.
		return "", c.redact(transportError(rerr))
	}
	id, err := ParseMediaID(answer)
	if err != nil {
		return "", c.redact(&Error{Status: resp.StatusCode, Message: err.Error(), permanent: true})
	}
	return id, nil
}

// ParseMediaID reads the media id from an accepted upload's answer. Kaleyra's reference shows
// no sample answer; it passes on Meta's, {"id": "<media id>"}, so that is the one form taken: a
// JSON object whose key "id" (exactly) is a string of 1 to MaxMediaIDBytes printable ASCII
// characters without spaces. Anything else is an error that quotes what came back, cut short.
func ParseMediaID(body []byte) (string, error) {
	var a map[string]json.RawMessage
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("the answer is not the JSON object {\"id\": …}: %q", clean(string(body), 200))
	}
	raw, ok := a["id"]
	var id string
	if !ok || json.Unmarshal(raw, &id) != nil {
		return "", fmt.Errorf("the answer names no media id: %q", clean(string(body), 200))
	}
	if id == "" || len(id) > MaxMediaIDBytes || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return "", fmt.Errorf("the answer's media id is not 1 to %d printable characters: %q", MaxMediaIDBytes, clean(id, 80))
	}
	return id, nil
}

// formName is name as the form may carry it: the base name, printable ASCII only.
func formName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f || r == '"' {
			return '_'
		}
		return r
	}, name)
	if name == "." || name == "/" || strings.Trim(name, "_") == "" {
		return "file"
	}
	return name
}

// exactly reads left bytes of r: at most that many, and an io.ErrUnexpectedEOF when r ends
// before them.
type exactly struct {
	r    io.Reader
	left int64
}

func (e *exactly) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, io.ErrUnexpectedEOF
	}
	if e.left == 0 && err == nil {
		return n, io.EOF
	}
	return n, err
}
