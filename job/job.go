// Package job is the one definition of a wabulk job: the asynq task type, the versioned JSON
// payload, its validation and the TaskID rule. The producer, the HTTP API and the worker all use
// it; nothing else encodes or decodes a payload.
package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// TaskType is the asynq task type of every wabulk job.
const TaskType = "kaleyra:whatsapp:media"

// Version is the payload version this build writes and reads.
const Version = 1

// Limits on a payload's fields.
const (
	MaxRef        = 255      // characters of ref, ref1, ref2 (Kaleyra's limit); longer ones are cut
	MaxCaption    = 1024     // characters of a caption (WhatsApp's limit)
	MaxFilename   = 240      // characters of a document's filename
	MaxMediaID    = 128      // bytes of a media id
	MaxMediaLink  = 2048     // bytes of a media link
	MaxCampaign   = 64       // bytes of a campaign id
	MaxPayload    = 16 << 10 // bytes of an encoded payload: Encode refuses more, Decode too
	DefaultSource = "api"
)

// Types are the media types WhatsApp sends.
var Types = []string{"image", "video", "audio", "document", "sticker"}

// Sources are the documented wa_source values; anything else becomes "api".
var Sources = []string{"api", "clevertap", "zoho", "webengage", "shopify", "leadsquared", "responsys",
	"braze", "hubspot", "salesforce", "zapier", "eloqua", "moengage"}

// Payload is the JSON body of one task: one media message to one recipient.
type Payload struct {
	V         int    `json:"v"`
	Campaign  string `json:"campaign"`
	From      string `json:"from,omitempty"` // E.164 sender; the producer always sets it (empty: the worker's KALEYRA_FROM sends it)
	To        string `json:"to"`             // E.164 recipient
	Type      string `json:"type"`
	MediaID   string `json:"media_id,omitempty"`
	MediaLink string `json:"media_link,omitempty"`
	Caption   string `json:"caption,omitempty"`
	Filename  string `json:"filename,omitempty"`
	Ref       string `json:"ref,omitempty"`
	Ref1      string `json:"ref1,omitempty"`
	Ref2      string `json:"ref2,omitempty"`
	WASource  string `json:"wa_source"`
}

// Fields are a message's fields as users give them: CSV columns, JSONL keys, HTTP body keys.
// Everything is a string as typed; New checks and normalises.
type Fields struct {
	To        string `json:"to,omitempty"`
	Type      string `json:"type,omitempty"`
	MediaID   string `json:"media_id,omitempty"`
	MediaLink string `json:"media_link,omitempty"`
	Caption   string `json:"caption,omitempty"`
	Filename  string `json:"filename,omitempty"`
	Ref       string `json:"ref,omitempty"`
	Ref1      string `json:"ref1,omitempty"`
	Ref2      string `json:"ref2,omitempty"`
	WASource  string `json:"wa_source,omitempty"`
	From      string `json:"from,omitempty"`
}

// Columns are the CSV column names, in Fields order.
var Columns = []string{"to", "type", "media_id", "media_link", "caption", "filename", "ref", "ref1", "ref2", "wa_source", "from"}

// Ptr returns a pointer to the field named by a CSV column, or nil for an unknown name.
func (f *Fields) Ptr(column string) *string {
	switch column {
	case "to":
		return &f.To
	case "type":
		return &f.Type
	case "media_id":
		return &f.MediaID
	case "media_link":
		return &f.MediaLink
	case "caption":
		return &f.Caption
	case "filename":
		return &f.Filename
	case "ref":
		return &f.Ref
	case "ref1":
		return &f.Ref1
	case "ref2":
		return &f.Ref2
	case "wa_source":
		return &f.WASource
	case "from":
		return &f.From
	}
	return nil
}

// Over returns f with every non-empty field of o put over it (a row's own value beats the
// campaign default). The media is one choice, not two fields: when o names a media_id or a
// media_link, it replaces f's media as a whole, so a campaign-wide --media-link and a row's own
// media_id give the row's media_id rather than "give media_id or media_link, not both".
func (f Fields) Over(o Fields) Fields {
	if o.MediaID != "" || o.MediaLink != "" {
		f.MediaID, f.MediaLink = "", ""
	}
	for _, c := range Columns {
		if v := *o.Ptr(c); v != "" {
			*f.Ptr(c) = v
		}
	}
	return f
}

// Recipients splits a `to` cell holding several numbers separated by commas (or semicolons).
// Empty parts are dropped.
func Recipients(to string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(to, func(r rune) bool { return r == ',' || r == ';' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// New builds a validated payload for one recipient (f.To must hold exactly one number; use
// Recipients first). The error says what is wrong in words a user can act on.
func New(campaign string, f Fields) (Payload, error) {
	p := Payload{
		V:         Version,
		Campaign:  strings.TrimSpace(campaign),
		From:      strings.TrimSpace(f.From),
		To:        strings.TrimSpace(f.To),
		Type:      strings.ToLower(strings.TrimSpace(f.Type)),
		MediaID:   strings.TrimSpace(f.MediaID),
		MediaLink: strings.TrimSpace(f.MediaLink),
		Caption:   f.Caption,
		Filename:  strings.TrimSpace(f.Filename),
		Ref:       f.Ref,
		Ref1:      f.Ref1,
		Ref2:      f.Ref2,
		WASource:  strings.ToLower(strings.TrimSpace(f.WASource)),
	}
	if err := p.Normalize(); err != nil {
		return Payload{}, err
	}
	return p, nil
}

var campaignRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidCampaign checks a campaign id: 1–64 of letters, digits, '.', '_' and '-', starting with
// a letter or digit (it becomes part of TaskIDs and Redis keys).
func ValidCampaign(id string) error {
	if id == "" {
		return errors.New("campaign id is required")
	}
	if len(id) > MaxCampaign || !campaignRE.MatchString(id) {
		return fmt.Errorf("campaign id %q: want 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", clip(id, 80), MaxCampaign)
	}
	return nil
}

// Normalize validates p in place and brings it to its stored form: E.164 numbers checked
// against their country's numbering plan, refs cut to 255 characters, unknown wa_source →
// "api". It is idempotent.
func (p *Payload) Normalize() error { return p.normalize(NormalizeNumber, normalizeSender) }

// normalize is Normalize with the number checks given: the full ones for a new payload, the
// stored-form one for a payload read back from Redis (Decode).
func (p *Payload) normalize(checkTo, checkFrom func(string) (string, error)) error {
	if p.V != Version {
		return fmt.Errorf("payload version %d is not supported (want %d)", p.V, Version)
	}
	if err := ValidCampaign(p.Campaign); err != nil {
		return err
	}
	n, err := checkTo(p.To)
	if err != nil {
		return fmt.Errorf("to: %w", err)
	}
	p.To = n
	if p.From != "" {
		from, err := checkFrom(p.From)
		if err != nil {
			return fmt.Errorf("from: %w", err)
		}
		p.From = from
	}
	if !contains(Types, p.Type) {
		if p.Type == "" {
			return errors.New("type is required (image, video, audio, document or sticker)")
		}
		return fmt.Errorf("type %q is not one of image, video, audio, document, sticker", clip(p.Type, 40))
	}
	switch {
	case p.MediaID == "" && p.MediaLink == "":
		return errors.New("media_id or media_link is required")
	case p.MediaID != "" && p.MediaLink != "":
		return errors.New("give media_id or media_link, not both")
	case p.MediaID != "":
		if err := CheckMediaID(p.MediaID); err != nil {
			return err
		}
	default:
		if err := checkLink(p.MediaLink); err != nil {
			return err
		}
	}
	if p.Caption != "" {
		if p.Type != "image" && p.Type != "video" && p.Type != "document" {
			return fmt.Errorf("caption is not allowed for %s (only image, video, document)", p.Type)
		}
		if !utf8.ValidString(p.Caption) {
			return errors.New("caption is not valid UTF-8")
		}
		if utf8.RuneCountInString(p.Caption) > MaxCaption {
			return fmt.Errorf("caption is longer than %d characters", MaxCaption)
		}
	}
	if p.Filename != "" {
		if p.Type != "document" {
			return fmt.Errorf("filename is only allowed for documents, not %s", p.Type)
		}
		if !utf8.ValidString(p.Filename) || strings.ContainsAny(p.Filename, "/\\\x00") ||
			utf8.RuneCountInString(p.Filename) > MaxFilename {
			return fmt.Errorf("filename must be valid UTF-8, up to %d characters, without '/' or '\\'", MaxFilename)
		}
	}
	p.Ref, p.Ref1, p.Ref2 = CutRef(p.Ref), CutRef(p.Ref1), CutRef(p.Ref2)
	if !contains(Sources, p.WASource) {
		p.WASource = DefaultSource
	}
	return nil
}

// CutRef makes a ref valid UTF-8 (bad bytes become U+FFFD) and cuts it to MaxRef characters,
// never inside a UTF-8 sequence.
func CutRef(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	n := 0
	for i := range s {
		if n == MaxRef {
			return s[:i]
		}
		n++
	}
	return s
}

// NormalizeNumber checks a phone number against real numbering plans and returns it in E.164.
// A missing '+' is added; spaces, dashes, dots and parentheses are allowed; letters are not.
func NormalizeNumber(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("number is empty")
	}
	if len(s) > 32 {
		return "", fmt.Errorf("%q is too long for a phone number", clip(s, 32))
	}
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '+' && i == 0, r == ' ', r == '-', r == '.', r == '(', r == ')':
		default:
			return "", fmt.Errorf("%q is not a phone number (unexpected %q)", clip(s, 32), r)
		}
	}
	if digits == 0 {
		return "", fmt.Errorf("%q has no digits", s)
	}
	if s[0] != '+' {
		s = "+" + s
	}
	if d := onlyDigits(s); len(d) <= 17 {
		if num, ok := fromDigits(d); ok && phonenumbers.IsValidNumber(num) {
			return "+" + d, nil
		}
	}
	// The general path: libphonenumber's parser also handles a trunk prefix written after the
	// country code (+44 07911 …) and gives the reason a number is refused.
	num, err := phonenumbers.Parse(s, "")
	if err != nil {
		return "", fmt.Errorf("%q is not a phone number with a country code: %v", s, err)
	}
	if !phonenumbers.IsValidNumber(num) {
		return "", fmt.Errorf("%q is not a valid number in its country's numbering plan", s)
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// senders remembers valid sender numbers: a campaign has one or a few, and every row names
// one, so checking each once halves the validation cost of a row. Bounded, never evicted:
// past the bound, numbers are checked every time.
var senders sync.Map // as given → E.164

const maxSenders = 4096

var sendersLen atomic.Int32

func normalizeSender(s string) (string, error) {
	if v, ok := senders.Load(s); ok {
		return v.(string), nil
	}
	n, err := NormalizeNumber(s)
	if err == nil && sendersLen.Load() < maxSenders {
		if _, loaded := senders.LoadOrStore(s, n); !loaded {
			sendersLen.Add(1)
		}
	}
	return n, err
}

// fromDigits builds the number that phonenumbers.Parse would build from "+"+d when d is only
// digits and needs no trunk-prefix stripping: country code (1–3 digits, the first that exists),
// then the national number with its leading zeros recorded as Parse records them. It skips
// Parse's regular expressions (extension stripping, punctuation), which cost twice the
// validation itself; the validation (IsValidNumber against the region's plan) is the same.
// TestFastPathAgreesWithParse holds the two paths equal.
func fromDigits(d string) (*phonenumbers.PhoneNumber, bool) {
	if d == "" || d[0] == '0' {
		return nil, false // no country code starts with 0
	}
	codes := phonenumbers.GetSupportedCallingCodes()
	for l := 1; l <= 3 && l < len(d); l++ {
		cc, err := strconv.Atoi(d[:l])
		if err != nil || !codes[cc] {
			continue
		}
		nat := d[l:]
		n, err := strconv.ParseUint(nat, 10, 64)
		if err != nil {
			return nil, false
		}
		num := &phonenumbers.PhoneNumber{CountryCode: proto.Int32(int32(cc)), NationalNumber: proto.Uint64(n)}
		if len(nat) > 1 && nat[0] == '0' {
			num.ItalianLeadingZero = proto.Bool(true)
			zeros := 1
			for zeros < len(nat)-1 && nat[zeros] == '0' {
				zeros++
			}
			if zeros != 1 {
				num.NumberOfLeadingZeros = proto.Int32(int32(zeros))
			}
		}
		return num, true
	}
	return nil, false
}

func onlyDigits(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func checkLink(link string) error {
	if len(link) > MaxMediaLink {
		return fmt.Errorf("media_link is longer than %d bytes", MaxMediaLink)
	}
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("media_link %q must be an absolute http(s) URL", clip(link, 80))
	}
	if strings.IndexFunc(link, unicode.IsSpace) >= 0 {
		return fmt.Errorf("media_link %q must not contain spaces", clip(link, 80))
	}
	return nil
}

// TaskID is the asynq TaskID of a payload: campaign, sender and recipient, so the same campaign
// enqueued twice yields the same ids and asynq refuses the second copy. A payload without a
// sender gets "default"; the producer never writes one: it refuses a row whose sender it
// cannot resolve, since "default" would name a different sender on each KALEYRA_FROM.
func TaskID(p Payload) string {
	from := strings.TrimPrefix(p.From, "+")
	if from == "" {
		from = "default"
	}
	return p.Campaign + ":" + from + ":" + strings.TrimPrefix(p.To, "+")
}

// Encode returns the payload's JSON bytes. It refuses a payload whose encoding exceeds
// MaxPayload, the limit Decode holds the worker to: the per-field limits count characters, and
// JSON escaping (`&` becomes \u0026, six bytes) can take a payload within them past it, and a
// job the worker cannot decode would be dead-lettered, not sent. Checking here, on the bytes
// that go to Redis, keeps the producer and the worker on one limit.
func Encode(p Payload) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("the message is %d bytes once encoded, more than the %d bytes a job may take "+
			"(JSON escaping counts: & < > become 6 bytes each); shorten media_link, caption or the refs",
			len(b), MaxPayload)
	}
	return b, nil
}

// Decode reads a payload back from Redis and validates it again: what is in Redis is input too
// (written by another program, by hand, or damaged). Unknown fields are refused, and numbers
// must be in the stored form (storedNumber).
func Decode(b []byte) (Payload, error) {
	if len(b) > MaxPayload {
		return Payload{}, fmt.Errorf("payload is %d bytes, more than %d", len(b), MaxPayload)
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Payload{}, fmt.Errorf("payload is not a wabulk job: %v", err)
	}
	// dec.More would miss a stray '}' or ']' after the object; only EOF means nothing follows.
	if _, err := dec.Token(); err != io.EOF {
		return Payload{}, errors.New("payload is not a wabulk job: data after the JSON object")
	}
	if err := p.normalize(storedNumber, storedNumber); err != nil {
		return Payload{}, fmt.Errorf("payload is invalid: %w", err)
	}
	return p, nil
}

// storedNumber accepts a number in the form Normalize stores: '+' and 3 to 20 digits, the
// first not 0 (a country code of 1–3 digits and a national number of 2–17, libphonenumber's
// bounds). Decode checks this instead of the numbering plan, which New checked before the job
// reached Redis: libphonenumber was the largest cost of the worker's decode, and a number that
// has the form but no plan behind it (a job written to Redis by hand) is refused by Kaleyra
// and dead-lettered like any other. TestFastPathAgreesWithParse holds every stored number to it.
func storedNumber(s string) (string, error) {
	d, ok := strings.CutPrefix(s, "+")
	if !ok || len(d) < 3 || len(d) > 20 || d[0] == '0' || strings.IndexFunc(d, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return "", fmt.Errorf("%q is not a number in E.164 form (+ and 3 to 20 digits)", clip(s, 32))
	}
	return s, nil
}

// CheckMediaID says why id cannot be a job's media_id, or nil if it can: 1 to MaxMediaID
// letters, digits, '.', '_' or '-' (Meta's ids are digits).
func CheckMediaID(id string) error {
	if id == "" || len(id) > MaxMediaID || strings.IndexFunc(id, notIDRune) >= 0 {
		return fmt.Errorf("media_id must be up to %d letters, digits, '.', '_' or '-'", MaxMediaID)
	}
	return nil
}

func notIDRune(r rune) bool {
	return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '_' || r == '-')
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// clip shortens s for an error message, on a character boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
