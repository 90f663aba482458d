package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
)

// MediaLifetime is how long an uploaded media id can be sent: Meta keeps uploaded media for 30
// days.
const MediaLifetime = 30 * 24 * time.Hour

// maxUploadBody caps the multipart body of an upload: the largest file WhatsApp takes and room
// for the form around it. A larger body is a WA400.
const maxUploadBody = kaleyradocs.MaxMediaBytes + 64<<10

// Upload is one call to the media endpoint.
type Upload struct {
	// Time is when the call arrived.
	Time time.Time `json:"time"`
	// From is the sender of the path (digits); empty when the call was refused before it.
	From string `json:"from"`
	// Type is the form's type field and Size the file's length, as far as they were read.
	Type string `json:"type,omitempty"`
	Size int64  `json:"size"`
	// Answer is the answer's name (see Answers).
	Answer string `json:"answer"`
	// ID is the media id issued; empty unless the upload was accepted.
	ID string `json:"id,omitempty"`
}

// upload is the Upload Media Files endpoint, POST /v2/{sid}/whatsapp/{from}/media: the checks
// of a send (account, sender), the account's plan (prepaid accounts cannot upload), then the
// form: a file part and a type part naming a MIME type WhatsApp takes, the file within that
// type's size limit. An accepted upload answers Meta's {"id": "<media id>"}.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	var key string
	if v := r.Header["Api-Key"]; len(v) > 0 {
		key = v[0]
	}
	if r.PathValue("sid") != s.cfg.SID || subtle.ConstantTimeCompare([]byte(key), s.key) != 1 {
		s.recordUpload(Upload{Time: at, Answer: AnswerAuth})
		writeFixed(w, fixed[AnswerAuth])
		return
	}
	from, ok := s.senders[r.PathValue("from")]
	if !ok {
		s.recordUpload(Upload{Time: at, From: r.PathValue("from"), Answer: AnswerSender})
		writeFixed(w, fixed[AnswerSender])
		return
	}
	if s.cfg.Prepaid {
		s.recordUpload(Upload{Time: at, From: from, Answer: AnswerAccount})
		writeFixed(w, fixed[AnswerAccount])
		return
	}
	up, ok := readUpload(w, r)
	up.Time, up.From = at, from
	if !ok {
		up.Answer = AnswerBadPayload
		s.recordUpload(up)
		writeFixed(w, fixed[AnswerBadPayload])
		return
	}
	up.Answer = s.chooseUpload()
	var body []byte
	if up.Answer == AnswerOK || up.Answer == AnswerSlowloris {
		up.ID = s.issue(from, at)
		body = []byte(`{"id":"` + up.ID + `"}`)
	}
	s.recordUpload(up)
	switch up.Answer {
	case AnswerOK:
		writeOK(w, body)
	case AnswerSlowloris:
		writeSlow(w, r, body, s.cfg.HangFor, s.done)
	case AnswerHang:
		writeHang(w, r, s.cfg.HangFor, s.done)
	case AnswerReset:
		writeReset(w)
	case AnswerBig, AnswerBig200:
		writeBig(w, r, up.Answer)
	default:
		writeFixed(w, fixed[up.Answer])
	}
}

// readUpload reads the multipart form and reports whether it is an upload WhatsApp takes. The
// file is counted, not kept: only its first bytes are looked at (is a WebP animated?).
func readUpload(w http.ResponseWriter, r *http.Request) (Upload, bool) {
	var up Upload
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" || r.ContentLength > maxUploadBody {
		return up, false
	}
	// The cap holds while reading: Content-Length may be absent (chunked).
	r.Body = http.MaxBytesReader(w, r.Body, maxUploadBody)
	mr, err := r.MultipartReader()
	if err != nil {
		return up, false
	}
	var head []byte
	var haveFile, haveType bool
	for parts := 0; ; parts++ {
		if parts == 16 {
			return up, false
		}
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return up, false
		}
		switch p.FormName() {
		case "file":
			if haveFile {
				return up, false
			}
			haveFile = true
			var h bytes.Buffer
			n, err := io.Copy(&h, io.LimitReader(p, 32))
			if err != nil {
				return up, false
			}
			head = h.Bytes()
			m, err := io.Copy(io.Discard, io.LimitReader(p, maxUploadBody))
			up.Size = n + m
			if err != nil || up.Size > kaleyradocs.MaxMediaBytes {
				return up, false
			}
		case "type":
			if haveType {
				return up, false
			}
			haveType = true
			b, err := io.ReadAll(io.LimitReader(p, 256))
			if err != nil {
				return up, false
			}
			up.Type = strings.TrimSpace(string(b))
		default:
			// Fields the API does not name are ignored, as the real API does with unknown keys.
			if _, err := io.Copy(io.Discard, io.LimitReader(p, 64<<10)); err != nil {
				return up, false
			}
		}
	}
	mt, _, err = mime.ParseMediaType(up.Type)
	if !haveFile || !haveType || err != nil || up.Size == 0 {
		return up, false
	}
	m, ok := kaleyradocs.LookupMedia(strings.ToLower(mt))
	return up, ok && up.Size <= m.Limit(animatedWebP(head))
}

// animatedWebP reports whether a WebP file's header says it is animated: an extended (VP8X)
// file with the animation flag set.
func animatedWebP(head []byte) bool {
	return len(head) >= 21 && string(head[0:4]) == "RIFF" && string(head[8:16]) == "WEBPVP8X" && head[20]&0x02 != 0
}

// chooseUpload takes the next scripted upload answer, or ok.
func (s *Server) chooseUpload() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.uploadScript) == 0 {
		return AnswerOK
	}
	name := s.uploadScript[0]
	s.uploadScript = s.uploadScript[1:]
	return name
}

func (s *Server) recordUpload(up Upload) {
	s.mu.Lock()
	if up.ID != "" {
		s.uploaded++
	}
	s.uploads = append(s.uploads, up)
	s.mu.Unlock()
}

// Media ids are self-verifying: "sbx-<unix time>-<nonce>-<mac>", the MAC keyed by the account
// (SID and API key) over the sender, the time and the nonce. So a sandbox accepts the ids of
// every sandbox of the same account, as Kaleyra's media store outlives any one process (a
// campaign re-run against a restarted sandbox reuses its cached ids), and refuses an id from
// another sender, another account, or older than MediaLifetime, without keeping a list.

// issue returns a new media id of sender from, issued at.
func (s *Server) issue(from string, at time.Time) string {
	var nonce [6]byte
	rand.Read(nonce[:])
	ts := strconv.FormatInt(at.Unix(), 10)
	n := hex.EncodeToString(nonce[:])
	return "sbx-" + ts + "-" + n + "-" + s.mediaMAC(from, ts, n)
}

func (s *Server) mediaMAC(from, ts, nonce string) string {
	h := hmac.New(sha256.New, s.mediaKey)
	io.WriteString(h, from+"\x00"+ts+"\x00"+nonce)
	return hex.EncodeToString(h.Sum(nil)[:10])
}

// knownMedia reports whether sender from may send media id: one of Config.MediaIDs, or an id
// this account issued to from less than MediaLifetime before now.
func (s *Server) knownMedia(from, id string, now time.Time) bool {
	if _, ok := s.mediaIDs[id]; ok {
		return true
	}
	parts := strings.Split(id, "-")
	if len(parts) != 4 || parts[0] != "sbx" {
		return false
	}
	secs, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return false
	}
	issued := time.Unix(secs, 0)
	if now.Sub(issued) > MediaLifetime || issued.After(now.Add(time.Minute)) {
		return false
	}
	return hmac.Equal([]byte(s.mediaMAC(from, parts[1], parts[2])), []byte(parts[3]))
}

// ScriptUploads makes the next uploads (from any sender) get answers in this order, after any
// still scripted; then uploads are accepted again.
func (s *Server) ScriptUploads(answers ...string) error {
	if err := checkAnswers(answers); err != nil {
		return err
	}
	s.mu.Lock()
	s.uploadScript = append(s.uploadScript, answers...)
	s.mu.Unlock()
	return nil
}

// Uploads returns every call to the media endpoint so far, in arrival order.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Upload(nil), s.uploads...)
}

func (s *Server) handleUploads(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Uploads()) }
