package sandbox

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// send is the messages endpoint: the checks in the order the real API makes them (account,
// sender, payload), then the scripted or drawn answer.
func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	// Header lookups by canonical key directly: Header.Get would canonicalise "api-key" anew
	// on every call.
	var key string
	if v := r.Header["Api-Key"]; len(v) > 0 {
		key = v[0]
	}
	if r.PathValue("sid") != s.cfg.SID || subtle.ConstantTimeCompare([]byte(key), s.key) != 1 {
		s.record(at, "", "", AnswerAuth)
		writeFixed(w, fixed[AnswerAuth])
		return
	}
	from, ok := s.senders[r.PathValue("from")]
	if !ok {
		s.record(at, r.PathValue("from"), "", AnswerSender)
		writeFixed(w, fixed[AnswerSender])
		return
	}
	m, ok := s.readSend(r)
	if !ok {
		s.record(at, from, "", AnswerBadPayload)
		writeFixed(w, fixed[AnswerBadPayload])
		return
	}
	mediaOK := m.id == "" || s.knownMedia(from, m.id, at)
	name, draw := s.choose(at, from, m, mediaOK)
	if !s.delay(r, draw) {
		panic(http.ErrAbortHandler) // see writeHang
	}
	switch name {
	case AnswerOK:
		writeOK(w, s.accept(m.to, draw))
	case AnswerSlowloris:
		writeSlow(w, r, s.accept(m.to, draw), s.cfg.HangFor, s.done)
	case AnswerHang:
		writeHang(w, r, s.cfg.HangFor, s.done)
	case AnswerReset:
		writeReset(w)
	case AnswerBig, AnswerBig200:
		writeBig(w, r, name)
	default:
		writeFixed(w, fixed[name])
	}
}

// delay waits out the configured latency; false when the client or the server went away.
func (s *Server) delay(r *http.Request, draw uint64) bool {
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		// A second draw from the same hash keeps jitter deterministic too.
		d += time.Duration((2*unit(mix(draw)) - 1) * float64(s.cfg.Jitter))
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

// accept returns the answer to an accepted message and plans its status callbacks from draw,
// the hash its answer was chosen by (so they too follow Seed).
func (s *Server) accept(to string, draw uint64) []byte {
	body, id := s.acceptBody(to)
	if s.callbacks != nil {
		s.callbacks.plan(draw, id, to)
	}
	return body
}

// acceptBody is Meta's answer shape, which Kaleyra passes on: the recipient as sent and as a
// WhatsApp id, and a fresh message id.
func (s *Server) acceptBody(to string) (body []byte, msgID string) {
	var id [16]byte
	copy(id[:8], s.idBase[:])
	seq := s.idSeq.Add(1)
	for i := 0; i < 8; i++ {
		id[8+i] = byte(seq >> (56 - 8*i))
	}
	b := make([]byte, 0, 160)
	b = append(b, `{"messaging_product":"whatsapp","contacts":[{"input":"`...)
	b = append(b, to...)
	b = append(b, `","wa_id":"`...)
	b = append(b, to[1:]...)
	b = append(b, `"}],"messages":[{"id":"`...)
	start := len(b)
	b = append(b, "wamid."...)
	b = hex.AppendEncode(b, id[:])
	end := len(b)
	b = append(b, `"}]}`...)
	return b, string(b[start:end])
}

func writeOK(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = ctJSON
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// The request body as the sandbox checks it. Unknown fields are ignored, as the real API does;
// a field of the wrong JSON type fails decoding and so is a WA400.
type sendBody struct {
	MessagingObject *messagingObject `json:"messaging_object"`
	ExtraInfo       *struct {
		Ref      string `json:"ref"`
		Ref1     string `json:"ref1"`
		Ref2     string `json:"ref2"`
		WASource string `json:"wa_source"`
	} `json:"extra_info"`
}

type messagingObject struct {
	MessagingProduct string       `json:"messaging_product"`
	RecipientType    *string      `json:"recipient_type"`
	To               string       `json:"to"`
	Type             string       `json:"type"`
	Image            *mediaObject `json:"image"`
	Video            *mediaObject `json:"video"`
	Audio            *mediaObject `json:"audio"`
	Document         *mediaObject `json:"document"`
	Sticker          *mediaObject `json:"sticker"`
}

type mediaObject struct {
	ID       string `json:"id"`
	Link     string `json:"link"`
	Caption  string `json:"caption"`
	Filename string `json:"filename"`
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// sendInfo is what the sandbox keeps of a well-formed send: the recipient as "+digits", the
// media type, and the media id or whether a link was given instead.
type sendInfo struct {
	to, typ, id string
	link        bool
}

// readSend reads and checks the body.
func (s *Server) readSend(r *http.Request) (sendInfo, bool) {
	if !isJSON(r.Header["Content-Type"]) || r.ContentLength > MaxBodyBytes {
		return sendInfo{}, false
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		// Keep only ordinary buffers: one 1 MiB body must not pin 1 MiB per pooled buffer.
		if buf.Cap() <= 64<<10 {
			bufPool.Put(buf)
		}
	}()
	// The cap is enforced while reading: Content-Length may be absent (chunked) or wrong.
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes+1)); err != nil || buf.Len() > MaxBodyBytes {
		return sendInfo{}, false
	}
	var b sendBody
	if json.Unmarshal(buf.Bytes(), &b) != nil {
		return sendInfo{}, false
	}
	return checkSend(&b)
}

// checkSend applies the payload rules of the reference: messaging_product whatsapp, an
// individual recipient in E.164, a known media type whose object sits under the key named by
// type, exactly one of id and link, a link that is an absolute http(s) URL, and caption and
// filename only where WhatsApp allows them.
func checkSend(b *sendBody) (sendInfo, bool) {
	mo := b.MessagingObject
	if mo == nil || mo.MessagingProduct != "whatsapp" {
		return sendInfo{}, false
	}
	if mo.RecipientType != nil && *mo.RecipientType != "individual" {
		return sendInfo{}, false
	}
	to, ok := normalizeTo(mo.To)
	if !ok {
		return sendInfo{}, false
	}
	var typ string // a constant, so Calls share it
	var m *mediaObject
	captions := true
	switch mo.Type {
	case "image":
		m, typ = mo.Image, "image"
	case "video":
		m, typ = mo.Video, "video"
	case "document":
		m, typ = mo.Document, "document"
	case "audio":
		m, typ, captions = mo.Audio, "audio", false
	case "sticker":
		m, typ, captions = mo.Sticker, "sticker", false
	default:
		return sendInfo{}, false
	}
	if m == nil || (m.ID == "") == (m.Link == "") {
		return sendInfo{}, false
	}
	if m.Link != "" && !httpURL(m.Link) {
		return sendInfo{}, false
	}
	if (m.Caption != "" && !captions) || (m.Filename != "" && mo.Type != "document") {
		return sendInfo{}, false
	}
	return sendInfo{to: to, typ: typ, id: m.ID, link: m.Link != ""}, true
}

// isJSON accepts application/json with optional parameters (charset), in any case.
func isJSON(v []string) bool {
	if len(v) != 1 {
		return false
	}
	ct := v[0]
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "application/json")
}

func httpURL(link string) bool {
	u, err := url.Parse(link)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")
}

// normalizeTo checks an E.164 number (the '+' optional, 8 to 15 digits, no leading 0) and
// returns it as "+digits". Only one recipient per call: wabulk sends one message per job.
func normalizeTo(s string) (string, bool) {
	d := strings.TrimPrefix(s, "+")
	if len(d) < 8 || len(d) > 15 || d[0] == '0' {
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", false
		}
	}
	if len(d) < len(s) {
		return s, true
	}
	return "+" + d, true
}

// scriptKey is normalizeTo for numbers typed by people: spaces and dashes are dropped first.
func scriptKey(s string) (string, bool) {
	if strings.HasPrefix(strings.TrimSpace(s), "+") {
		return normalizeTo("+" + digits(s))
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && r != '-' && (r < '0' || r > '9') }) {
		return "", false
	}
	return normalizeTo(digits(s))
}

// Control endpoints, for tests and demos driving a sandbox in another process.

func (s *Server) handleScript(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To      string   `json:"to"`
		Upload  bool     `json:"upload"`
		Answers []string `json:"answers"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	var err error
	if req.Upload {
		err = s.ScriptUploads(req.Answers...)
	} else {
		err = s.Script(req.To, req.Answers...)
	}
	if err != nil {
		controlError(w, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleBalance(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Balance *int64 `json:"balance"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if req.Balance == nil {
		controlError(w, `want {"balance": N}`)
		return
	}
	s.SetBalance(*req.Balance)
	writeJSON(w, map[string]int64{"balance": *req.Balance})
}

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Stats()) }

func (s *Server) handleCalls(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Calls()) }

func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(v); err != nil {
		controlError(w, "bad JSON: "+err.Error())
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
