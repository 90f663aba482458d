package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// CampaignRequest is the JSON body of POST /v1/campaigns.
type CampaignRequest struct {
	// Campaign is the campaign id (part of every TaskID: re-posting it enqueues nothing twice).
	Campaign string `json:"campaign"`
	// Defaults are campaign-wide fields; a recipient's own non-empty field beats them.
	Defaults job.Fields `json:"defaults"`
	// Recipients are one entry per row; a `to` may hold several numbers separated by commas.
	Recipients []job.Fields `json:"recipients"`
	// Priority weights the campaign's share of each sender's rate: high, normal or low.
	// Empty keeps the campaign's priority (normal for a new one).
	Priority string `json:"priority,omitempty"`
	// SendAt is an RFC 3339 time before which nothing of the campaign is sent; empty or past
	// sends as soon as workers can.
	SendAt string `json:"send_at,omitempty"`
}

// MessageRequest is the JSON body of POST /v1/messages: one message's fields and an optional
// campaign id.
type MessageRequest struct {
	Campaign string `json:"campaign,omitempty"`
	job.Fields
}

// Accepted is the 202 answer of both POST routes: the campaign, its counts and an outcome per
// recipient (sorted by index).
type Accepted struct {
	Campaign string `json:"campaign"`
	// State is the campaign's state after the request (scheduled, running, paused, …) and SendAt
	// its start time when it has one; both are absent when they could not be read.
	State  string     `json:"state,omitempty"`
	SendAt *time.Time `json:"send_at,omitempty"`
	producer.Summary
	Outcomes []producer.Outcome `json:"outcomes"`
	// Media is what became of a media_file: the media id each sender sends, uploaded now or
	// reused from the cache.
	Media *media.Report `json:"media,omitempty"`
}

// bodyError is a request body the API cannot take, with the problem to answer.
type bodyError struct {
	status int
	code   string
	msg    string
}

func (e *bodyError) Error() string { return e.msg }

// errTooManyRecipients stops a streamed campaign that passes Config.MaxRecipients.
var errTooManyRecipients = errors.New("too many recipients")

// decodeCampaign reads a POST /v1/campaigns JSON body: one object, no unknown keys (a typo such
// as "media_url" must not silently send a message without media), every value a string, at most
// maxRecipients recipients. Its errors are *bodyError values saying which problem to answer.
func decodeCampaign(r io.Reader, maxRecipients int) (CampaignRequest, error) {
	var req CampaignRequest
	if err := decodeStrict(r, &req); err != nil {
		return CampaignRequest{}, err
	}
	if _, err := store.ParsePriority(req.Priority); err != nil {
		return req, &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
	}
	if err := job.ValidCampaign(req.Campaign); err != nil {
		return CampaignRequest{}, &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
	}
	if _, err := parseSendAt(req.SendAt); err != nil {
		return CampaignRequest{}, err
	}
	if req.Defaults.To != "" {
		return CampaignRequest{}, &bodyError{http.StatusBadRequest, CodeInvalidRequest, "defaults cannot hold to: give each number in recipients"}
	}
	if len(req.Recipients) == 0 {
		return CampaignRequest{}, &bodyError{http.StatusBadRequest, CodeInvalidRequest, `recipients is empty: give at least one {"to": "+91…"}`}
	}
	n := 0
	for _, f := range req.Recipients {
		n += recipientCount(req.Defaults, f)
	}
	if n > maxRecipients {
		return CampaignRequest{}, &bodyError{http.StatusRequestEntityTooLarge, CodeTooManyRecipients,
			fmt.Sprintf("the request holds %d recipients, more than %d: split it, or raise --max-recipients", n, maxRecipients)}
	}
	return req, nil
}

// recipientCount is how many jobs a row can become (at least one: an empty `to` is one rejection).
func recipientCount(defaults, row job.Fields) int {
	return max(1, len(job.Recipients(defaults.Over(row).To)))
}

// parseSendAt reads a send_at: empty is the zero time (no schedule).
func parseSendAt(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, &bodyError{http.StatusBadRequest, CodeInvalidRequest,
			fmt.Sprintf("send_at=%q is not an RFC 3339 time such as 2025-06-01T09:30:00+05:30", v)}
	}
	return t, nil
}

// sendAt is when a campaign starts: the JSON body's send_at or the send_at query parameter
// (the only way with a streamed body). Given both ways, they must name the same time.
func sendAt(body, query string) (time.Time, error) {
	b, err := parseSendAt(body)
	if err != nil {
		return b, err
	}
	q, err := parseSendAt(query)
	if err != nil {
		return q, err
	}
	if body != "" && query != "" && !b.Equal(q) {
		return b, &bodyError{http.StatusBadRequest, CodeInvalidRequest,
			fmt.Sprintf("send_at is %q in the body and %q in the query: give it once", body, query)}
	}
	if b.IsZero() {
		return q, nil
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON object with no unknown keys into v, and none given twice
// or with invalid UTF-8 (jsonGuard).
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(newJSONGuard(r))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonError(err)
		}
		return &bodyError{http.StatusBadRequest, CodeBadJSON, "the body holds more than one JSON value"}
	}
	return nil
}

func jsonError(err error) error {
	var be *bodyError
	if errors.As(err, &be) {
		return be // jsonGuard's
	}
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return &bodyError{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("the body is over %d bytes", mb.Limit)}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &bodyError{http.StatusBadRequest, CodeBadJSON, fmt.Sprintf("%s must be %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)}
	}
	if err == io.EOF {
		return &bodyError{http.StatusBadRequest, CodeBadJSON, "the body is empty: want a JSON object"}
	}
	return &bodyError{http.StatusBadRequest, CodeBadJSON, "the body is not valid JSON: " + err.Error()}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct":
		return "an object"
	}
	return k
}

// bodyKind is what a POST /v1/campaigns body holds, from its Content-Type.
func bodyKind(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mt {
		case "application/json":
			return "json", nil
		case "text/csv":
			return "csv", nil
		case "application/x-ndjson", "application/jsonl", "application/x-jsonlines":
			return "jsonl", nil
		case "multipart/form-data":
			return "multipart", nil
		}
	}
	return "", &bodyError{http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
		fmt.Sprintf("Content-Type %q is not taken here: send application/json, text/csv, application/x-ndjson, "+
			"or multipart/form-data with a campaign part and a media_file part", ct)}
}

func requireJSON(r *http.Request) error {
	if k, err := bodyKind(r); err != nil || k != "json" {
		return &bodyError{http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q is not taken here: send application/json", r.Header.Get("Content-Type"))}
	}
	return nil
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	var be *bodyError
	if errors.As(err, &be) {
		writeProblem(w, newProblem(be.status, be.code, be.msg))
		return
	}
	writeProblem(w, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error()))
}

// outcomeMode says which outcomes an answer lists (?outcomes=all|rejected|none): a streamed
// campaign of a hundred thousand rows may want only the ones to fix.
func outcomeMode(r *http.Request) (string, error) {
	m := r.URL.Query().Get("outcomes")
	switch m {
	case "":
		return "all", nil
	case "all", "rejected", "none":
		return m, nil
	}
	return "", &bodyError{http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("outcomes=%q: want all, rejected or none", m)}
}

// collector gathers outcomes for the answer and counts them in the metrics.
type collector struct {
	s    *Server
	mode string
	out  []producer.Outcome
}

func (c *collector) add(o producer.Outcome) {
	c.s.metrics.recipients.WithLabelValues(string(o.Status)).Inc()
	if c.mode == "all" || (c.mode == "rejected" && o.Status == producer.StatusRejected) {
		c.out = append(c.out, o)
	}
}

func (c *collector) sorted() []producer.Outcome {
	slices.SortStableFunc(c.out, func(a, b producer.Outcome) int {
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.To, b.To)
	})
	if c.out == nil {
		return []producer.Outcome{}
	}
	return c.out
}

func (s *Server) postCampaign(w http.ResponseWriter, r *http.Request) {
	kind, err := bodyKind(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	mode, err := outcomeMode(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	if kind == "multipart" {
		s.postCampaignMedia(w, r, mode)
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	var (
		campaign string
		defaults job.Fields
		priority = r.URL.Query().Get("priority")
		bodyAt   string // the JSON body's send_at
		rows     iter.Seq[producer.Row]
		ctx      = r.Context()
	)
	if kind == "json" {
		req, err := decodeCampaign(body, s.cfg.MaxRecipients)
		if err != nil {
			s.fail(w, err)
			return
		}
		campaign, defaults, priority, bodyAt = req.Campaign, req.Defaults, req.Priority, req.SendAt
		rows = func(yield func(producer.Row) bool) {
			for _, f := range req.Recipients {
				if !yield(producer.Row{Fields: f}) {
					return
				}
			}
		}
		// The body is read: finish what was started even if the client leaves, so the queue
		// holds the whole request and a retry of it finds duplicates, not a half campaign.
		ctx = context.WithoutCancel(ctx)
	} else {
		if campaign, defaults, err = streamParams(r); err != nil {
			s.fail(w, err)
			return
		}
		var in iter.Seq[producer.Row]
		if kind == "csv" {
			in = producer.ReadCSV(body)
		} else {
			in = producer.ReadJSONL(body)
		}
		rows = limitRows(in, defaults, s.cfg.MaxRecipients)
	}
	at, err := sendAt(bodyAt, r.URL.Query().Get("send_at"))
	if err != nil {
		s.fail(w, err)
		return
	}
	c := &collector{s: s, mode: mode}
	sum, err := s.prod.Campaign(ctx, campaign, rows, producer.Options{Defaults: defaults, Priority: priority, SendAt: at}, c.add)
	s.answer(w, r, campaign, sum, c, err)
}

// answer writes 202, or the problem that stopped the run with what was and was not enqueued.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, campaign string, sum producer.Summary, c *collector, err error) {
	if err == nil {
		a := Accepted{Campaign: campaign, Summary: sum, Outcomes: c.sorted()}
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		if sum.Enqueued > 0 {
			// New work: the state hash alone says the state (a read of every lane would cost a
			// single message more than its enqueue).
			if state, at, err := s.ledger.StateAfterEnqueue(ctx, campaign); err == nil {
				a.State, a.SendAt = state, at
			}
		} else if info, err := s.ledger.Campaign(ctx, campaign); err == nil {
			a.State, a.SendAt = info.State, info.SendAt
		}
		writeJSON(w, http.StatusAccepted, a)
		return
	}
	var p *Problem
	var mb *http.MaxBytesError
	var re *producer.ReadError
	switch {
	case errors.As(err, &mb):
		p = newProblem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			fmt.Sprintf("the body is over %d bytes; the rows before the limit were handled as the summary says", mb.Limit))
	case errors.Is(err, errTooManyRecipients):
		p = newProblem(http.StatusRequestEntityTooLarge, CodeTooManyRecipients,
			fmt.Sprintf("more than %d recipients in one request; the ones before the limit were handled as the summary says", s.cfg.MaxRecipients))
	case errors.As(err, &re):
		p = newProblem(http.StatusBadRequest, CodeInvalidRequest, re.Error())
	case errors.Is(err, producer.ErrCampaignCancelled):
		p = newProblem(http.StatusConflict, CodeCampaignCancelled,
			"nothing was enqueued: "+err.Error()+"; a cancelled campaign takes no more messages, use a new campaign id")
	case r.Context().Err() != nil:
		// The client is gone: nobody reads the answer, but the log says what happened.
		s.log.Warn("campaign request ended by the client", zap.String("campaign", campaign),
			zap.Int("enqueued", sum.Enqueued), zap.Int("not_attempted", sum.NotAttempted))
		p = newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "the request was cancelled: "+err.Error())
	default:
		s.log.Warn("campaign request stopped by Redis", zap.String("campaign", campaign), zap.Error(err),
			zap.Int("enqueued", sum.Enqueued), zap.Int("not_attempted", sum.NotAttempted))
		p = newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable,
			"Redis failed midway: the outcomes listed were handled, every other recipient was not attempted; re-posting the same request is safe (done ones come back as duplicates): "+err.Error())
	}
	p.Campaign, p.Summary, p.Outcomes = campaign, &sum, c.sorted()
	writeProblem(w, p)
}

// streamParams reads a streamed campaign's id and defaults from the query: ?campaign=ID and one
// parameter per field (type, media_link, …). Unknown parameters are refused, as keys are in JSON.
func streamParams(r *http.Request) (string, job.Fields, error) {
	var f job.Fields
	q := r.URL.Query()
	for k, v := range q {
		switch k {
		case "campaign", "outcomes", "send_at": // send_at is read by sendAt
			continue
		case "priority":
			if _, err := store.ParsePriority(v[0]); err != nil {
				return "", f, &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
			}
			continue
		case "to":
			return "", f, &bodyError{http.StatusBadRequest, CodeInvalidRequest, "to cannot be a default: give the numbers in the body"}
		}
		p := f.Ptr(k)
		if p == nil {
			return "", f, &bodyError{http.StatusBadRequest, CodeInvalidRequest,
				fmt.Sprintf("unknown query parameter %q; known: campaign, outcomes, priority, send_at, %s", k, strings.Join(job.Columns[1:], ", "))}
		}
		*p = v[0]
	}
	c := q.Get("campaign")
	if err := job.ValidCampaign(c); err != nil {
		return "", f, &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error() + " (give it as ?campaign=ID)"}
	}
	return c, f, nil
}

// limitRows passes rows on until they hold more than max recipients, then stops the campaign
// with a *producer.ReadError wrapping errTooManyRecipients: a stream cannot be counted before
// it is enqueued without holding it all.
func limitRows(rows iter.Seq[producer.Row], defaults job.Fields, max int) iter.Seq[producer.Row] {
	return func(yield func(producer.Row) bool) {
		n := 0
		for row := range rows {
			if row.Err == nil {
				n += recipientCount(defaults, row.Fields)
			} else {
				n++
			}
			if n > max {
				yield(producer.Row{Line: row.Line, Err: &producer.ReadError{Line: row.Line, Err: errTooManyRecipients}})
				return
			}
			if !yield(row) {
				return
			}
		}
	}
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	if err := requireJSON(r); err != nil {
		s.fail(w, err)
		return
	}
	var req MessageRequest
	if err := decodeStrict(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), &req); err != nil {
		s.fail(w, err)
		return
	}
	if req.Campaign == "" {
		req.Campaign = messageCampaign(req.Fields)
	} else if err := job.ValidCampaign(req.Campaign); err != nil {
		s.fail(w, &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()})
		return
	}
	if n := len(job.Recipients(req.To)); n > s.cfg.MaxRecipients {
		s.fail(w, &bodyError{http.StatusRequestEntityTooLarge, CodeTooManyRecipients,
			fmt.Sprintf("to holds %d numbers, more than %d", n, s.cfg.MaxRecipients)})
		return
	}
	c := &collector{s: s, mode: "all"}
	outs, err := s.prod.Send(context.WithoutCancel(r.Context()), req.Campaign, req.Fields)
	var sum producer.Summary
	for _, o := range outs {
		c.add(o)
		sum.Add(o)
	}
	if err != nil {
		sum.NotAttempted = max(1, len(job.Recipients(req.To))) - len(outs)
	}
	s.answer(w, r, req.Campaign, sum, c, err)
}

// messageCampaign names the campaign of a message posted without one after its content (every
// field but `to`): posting the same message again (a client's retry) finds the same TaskID and
// is a duplicate, while a different message to the same number is a campaign of its own, and
// one media sent by many single posts shares one campaign in `wabulk status`.
func messageCampaign(f job.Fields) string {
	f.To = ""
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(f)
	sum := sha256.Sum256(b.Bytes())
	return "msg-" + hex.EncodeToString(sum[:8])
}
