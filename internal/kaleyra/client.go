// Package kaleyra is the HTTP client for Kaleyra's WhatsApp Send Media Messages API (v2) and its
// Upload Media Files API.
//
// It builds the documented requests (POST /v2/<sid>/whatsapp/<from>/messages with the api-key
// header and a messaging_object + extra_info body; POST /v2/<sid>/whatsapp/<from>/media with a
// multipart file and type) and turns every answer into either a result or one typed *Error that
// says whether retrying can help. The API key is held in an unexported
// field of a type that never prints, so it appears in no error, log field or %v of the client.
package kaleyra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wabulk/wabulk/internal/defaults"
)

// MaxAnswerBytes caps how much of an answer body the client reads; the rest is discarded.
const MaxAnswerBytes = 64 << 10

// Domains maps a region to the documented API domain.
var Domains = map[string]string{
	"in": "api.in.kaleyra.io",
	"sg": "api.kaleyra.io",
	"eu": "api.eu.kaleyra.io",
	"na": "api.na.kaleyra.ai",
}

// Config builds a Client.
type Config struct {
	// SID is the account SID. Required.
	SID string
	// APIKey is the API key sent in the api-key header. Required.
	APIKey string
	// Region picks the documented domain: in, sg, eu or na. Default "in".
	Region string
	// BaseURL, when set, replaces https://<domain> (the sandbox, tests). Default unset.
	BaseURL string
	// Timeout bounds one call, answer included. Default 15s.
	Timeout time.Duration
	// UploadTimeout bounds one upload, the file and the answer included: a 100 MB document
	// takes minutes on a slow link. Default 5m.
	UploadTimeout time.Duration
	// MaxConns is the idle connections kept per host; set it to the worker's concurrency. Default 64.
	MaxConns int
	// HTTPClient replaces the tuned client the package builds. Default nil.
	HTTPClient *http.Client
	// CallbackProfileID, when set, is sent with every message as callback_profile_id
	// (KALEYRA_CALLBACK_PROFILE_ID). Default unset.
	CallbackProfileID string
}

// Client sends media messages and uploads media. It is safe for concurrent use.
type Client struct {
	base   string // scheme://host[/prefix], no trailing slash
	sid    string
	key    secret
	http   *http.Client
	upload *http.Client // the same, with the longer UploadTimeout
	// profile is Config.CallbackProfileID.
	profile string
}

// secret keeps the API key out of every print of the client.
type secret string

func (secret) String() string   { return "[redacted]" }
func (secret) GoString() string { return `"[redacted]"` }

// Format prints the client without its key for every verb. fmt never calls String on an
// unexported field, so without this %v of a Client would print the key field raw.
func (c Client) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprintf(f, "&kaleyra.Client{base:%q, sid:%q, key:\"[redacted]\"}", c.base, c.sid)
		return
	}
	fmt.Fprintf(f, "kaleyra.Client{base:%s sid:%s key:[redacted]}", c.base, c.sid)
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.SID == "" || strings.ContainsAny(cfg.SID, "/?#% \t\r\n") {
		return nil, errors.New("kaleyra: SID is required and must not contain '/', '?', '#', '%' or spaces")
	}
	if err := CheckKey(cfg.APIKey); err != nil {
		return nil, fmt.Errorf("kaleyra: API key %w", err)
	}
	base := cfg.BaseURL
	if base == "" {
		region := cfg.Region
		if region == "" {
			region = defaults.Region
		}
		d, ok := Domains[region]
		if !ok {
			return nil, fmt.Errorf("kaleyra: region %q is not one of in, sg, eu, na", region)
		}
		base = "https://" + d
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, errors.New("kaleyra: base URL must be an absolute http(s) URL without credentials")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaults.HTTPTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaults.KaleyraMaxConns
	}
	if cfg.UploadTimeout <= 0 {
		cfg.UploadTimeout = defaults.KaleyraUploadTimeout
	}
	hc, uc := cfg.HTTPClient, cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = cfg.MaxConns * 2
		tr.MaxIdleConnsPerHost = cfg.MaxConns
		tr.ResponseHeaderTimeout = cfg.Timeout
		hc = &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: noRedirect}
		// Kaleyra may answer an upload only once the file has reached Meta.
		utr := http.DefaultTransport.(*http.Transport).Clone()
		utr.ResponseHeaderTimeout = cfg.UploadTimeout
		uc = &http.Client{Transport: utr, Timeout: cfg.UploadTimeout, CheckRedirect: noRedirect}
	}
	return &Client{base: strings.TrimRight(base, "/"), sid: cfg.SID, key: secret(cfg.APIKey), http: hc, upload: uc, profile: cfg.CallbackProfileID}, nil
}

// noRedirect stops at a redirect: Kaleyra does not redirect, and following one could send the
// key elsewhere.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// CheckKey says why key cannot be sent in the api-key header, or nil if it can. The rule is
// net/http's own for header values (no control character but tab: DEL, NUL, CR, LF, …): a key
// it refuses would make every call fail and dead-letter the whole campaign, so it is refused at
// start instead. The error tells where the bad byte is, never the key.
func CheckKey(key string) error {
	if key == "" {
		return errors.New("is required")
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return fmt.Errorf("holds a byte not allowed in an HTTP header (control character 0x%02x at byte %d)", b, i+1)
		}
	}
	return nil
}

// Message is one media message to one recipient.
type Message struct {
	To        string // E.164 with '+'
	Type      string // image, video, audio, document, sticker
	MediaID   string // uploaded media id, or
	MediaLink string // public http(s) URL
	Caption   string // image, video, document
	Filename  string // document
	Ref       string
	Ref1      string
	Ref2      string
	WASource  string
	// CallbackProfileID names the Kaleyra callback profile that reports the message's status,
	// sent as the top-level callback_profile_id. The public pages do not show where the field
	// goes, so it is off unless set. Default empty: the business number's profile applies.
	CallbackProfileID string
}

// Result is Kaleyra's answer to an accepted message.
type Result struct {
	// Status is the HTTP status (2xx).
	Status int
	// MessageID is the id Kaleyra gave the message, when the answer names one.
	MessageID string
	// Body is the answer body as received (at most MaxAnswerBytes).
	Body []byte
}

// Body returns the exact JSON the client sends for m: the documented body, with the media
// object under the key its type names, keys in the order encoding/json gives a map (sorted),
// empty optional fields left out. It is written by hand because it is built for every message
// and json.Marshal of a map cost the worker more than the rest of the request; strings that
// need escaping still go through encoding/json, so the bytes are what json.Marshal would give
// (TestBodyIsWhatJSONMarshalGives holds the two equal).
func Body(m Message) ([]byte, error) {
	switch m.Type {
	case "image", "video", "audio", "document", "sticker":
	default:
		return nil, fmt.Errorf("kaleyra: unknown media type %q", m.Type)
	}
	b := make([]byte, 0, 192+len(m.MediaLink)+len(m.Caption)+len(m.Ref)+len(m.Ref1)+len(m.Ref2))
	b = append(b, '{')
	if m.CallbackProfileID != "" {
		b = append(appendField(b, "callback_profile_id", m.CallbackProfileID), ',')
	}
	b = append(b, `"messaging_object":{`...)
	fixed := [...]string{"messaging_product", "whatsapp", "recipient_type", "individual", "to", m.To, "type", m.Type}
	placed := false // the media object, placed where its key sorts
	for i := 0; i < len(fixed); i += 2 {
		if !placed && m.Type < fixed[i] {
			b, placed = append(appendMedia(b, m), ','), true
		}
		b = appendField(b, fixed[i], fixed[i+1])
		if i+2 < len(fixed) {
			b = append(b, ',')
		}
	}
	if !placed {
		b = appendMedia(append(b, ','), m)
	}
	b = append(b, '}')
	if m.Ref != "" || m.Ref1 != "" || m.Ref2 != "" || m.WASource != "" {
		b = append(b, `,"extra_info":`...)
		b = appendObject(b, "ref", m.Ref, "ref1", m.Ref1, "ref2", m.Ref2, "wa_source", m.WASource)
	}
	return append(b, '}'), nil
}

func appendMedia(b []byte, m Message) []byte {
	b = append(appendString(b, m.Type), ':')
	return appendObject(b, "id", m.MediaID, "link", m.MediaLink, "caption", m.Caption, "filename", m.Filename)
}

// appendObject appends a JSON object of the key, value pairs kv whose value is not empty.
func appendObject(b []byte, kv ...string) []byte {
	b = append(b, '{')
	first := true
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendField(b, kv[i], kv[i+1])
	}
	return append(b, '}')
}

// appendField appends "k":"v".
func appendField(b []byte, k, v string) []byte {
	return appendString(append(appendString(b, k), ':'), v)
}

// appendString appends s as encoding/json writes a string: as it is when it is plain printable
// ASCII without characters JSON or HTML escape, else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// URL returns the endpoint for sender from (digits, '+' and separators are dropped).
func (c *Client) URL(from string) string {
	return c.base + "/v2/" + url.PathEscape(c.sid) + "/whatsapp/" + digits(from) + "/messages"
}

// Send posts m from the business number from. A nil error means Kaleyra accepted the message.
// Otherwise the error is an *Error (Kaleyra answered) or a transport error wrapped in *Error with
// Status 0 (no answer: network error, timeout, cancelled context); both say Retryable().
func (c *Client) Send(ctx context.Context, from string, m Message) (Result, error) {
	if m.CallbackProfileID == "" {
		m.CallbackProfileID = c.profile
	}
	body, err := Body(m)
	if err != nil {
		return Result{}, &Error{Code: "", Message: err.Error(), permanent: true}
	}
	if digits(from) == "" {
		return Result{}, &Error{Message: "kaleyra: sender number is empty", permanent: true}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL(from), bytes.NewReader(body))
	if err != nil {
		return Result{}, &Error{Message: "kaleyra: build request: " + err.Error(), permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", string(c.key))
	req.Header.Set("cache-control", "no-cache")
	resp, err := c.http.Do(req)
	if err != nil {
		return Result{}, transportError(err)
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}()
	answer, rerr := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if rerr != nil && resp.StatusCode/100 == 2 {
		// Accepted but the body broke off: the message was sent; keep what arrived.
		return Result{Status: resp.StatusCode, Body: answer, MessageID: messageID(answer)}, nil
	}
	if err := ParseAnswer(resp.StatusCode, resp.Header, answer); err != nil {
		return Result{}, c.redact(err)
	}
	return Result{Status: resp.StatusCode, Body: answer, MessageID: messageID(answer)}, nil
}

// redact removes the API key from an error's text, should an answer ever echo it back.
func (c *Client) redact(err error) error {
	var e *Error
	if !errors.As(err, &e) || len(c.key) < 4 {
		return err
	}
	key := string(c.key)
	e.Message = strings.ReplaceAll(e.Message, key, "[redacted]")
	for k, v := range e.Fields {
		e.Fields[k] = strings.ReplaceAll(v, key, "[redacted]")
	}
	return e
}

// transportError classifies a failure to get an answer. The URL in *url.Error holds no secret
// (the key travels in a header), but the message is rebuilt anyway to keep it short.
func transportError(err error) *Error {
	e := &Error{Code: "", Message: err.Error(), cause: err}
	var ue *url.Error
	if errors.As(err, &ue) {
		e.Message = ue.Err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		e.Timeout = true
	}
	return e
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// messageID finds the message id in an accepted answer. Kaleyra's v2 answers follow Meta's
// shape ({"messages":[{"id":"wamid…"}]}); some deployments wrap it in "data".
func messageID(body []byte) string {
	if id, ok := compactMessageID(body); ok {
		return id
	}
	return decodeMessageID(body)
}

// compactMessageID reads the id without decoding the answer (decoding was a third of the
// client's CPU per message) when the answer has the compact form every answer seen so far has,
// and says whether it could. In valid JSON the bytes "messages":[{"id":" cannot sit inside a
// string (their quotes are not escaped), so they are the key and the first message's id; the
// rest of the conditions (ASCII only, one key that folds to "messages", an id without escapes
// that ends its object) make it what decoding finds: FuzzMessageID holds the two equal.
func compactMessageID(body []byte) (string, bool) {
	key := []byte(`"messages":[{"id":"`)
	i := bytes.Index(body, key)
	if i < 0 {
		return "", false
	}
	keys := 0 // encoding/json matches keys case-insensitively
	for j, c := range body {
		if c >= 0x80 {
			return "", false
		}
		if c == '"' && j+10 <= len(body) && bytes.EqualFold(body[j:j+10], key[:10]) {
			keys++
		}
	}
	rest := body[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if keys != 1 || end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 || !bytes.HasPrefix(rest[end:], []byte(`"}`)) || !json.Valid(body) {
		return "", false
	}
	return string(rest[:end]), true
}

func decodeMessageID(body []byte) string {
	var a struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
		Data struct {
			Messages []struct {
				ID string `json:"id"`
			} `json:"messages"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &a) != nil {
		return ""
	}
	if len(a.Messages) > 0 {
		return a.Messages[0].ID
	}
	if len(a.Data.Messages) > 0 {
		return a.Data.Messages[0].ID
	}
	return ""
}
