package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// A campaign with a media file is POST /v1/campaigns as multipart/form-data with two parts:
// "campaign", the campaign as the route otherwise takes it (a JSON object, or a CSV or JSONL
// body with its id and defaults in the query, by the part's Content-Type), and "media_file",
// the image or document. Every part is read before anything is done: the campaign part is held
// in memory (at most MaxBodyBytes, as a whole body is), the file spooled to disk (at most
// MaxMediaBytes) and checked against WhatsApp's limits. Only then is the file uploaded once per
// sender the campaign names (media.Uploader.Prepare) and the campaign enqueued, so a body that
// is malformed, too large or hostile, and an upload that fails, leave nothing behind.

// multipartSlack is what a multipart body may hold beyond its two parts: boundaries, part
// headers and the odd preamble.
const multipartSlack = 64 << 10

// maxParts is the most parts a body may have: a campaign, a media file and their closing.
const maxParts = 2

// campaignPart is the campaign part of a multipart body, read.
type campaignPart struct {
	campaign string
	defaults job.Fields
	priority string
	rows     iter.Seq[producer.Row] // iterable twice: Prepare reads them once to find the senders
}

func (s *Server) postCampaignMedia(w http.ResponseWriter, r *http.Request, mode string) {
	if s.media == nil {
		s.fail(w, &bodyError{http.StatusNotImplemented, CodeMediaUnavailable,
			"this server has no Kaleyra account (KALEYRA_SID, KALEYRA_API_KEY) to upload a media_file to: " +
				"upload it with `wabulk media upload` and post the campaign with its media_id"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes+s.cfg.MaxMediaBytes+multipartSlack)
	camp, file, err := s.readMultipart(w, r)
	if file != nil {
		defer file.Close()
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	opt := producer.Options{Defaults: camp.defaults, Priority: camp.priority}
	rows, opt, rep, err := s.media.Prepare(r.Context(), file, camp.rows, opt, s.cfg.Producer.DefaultFrom)
	if err != nil {
		s.fail(w, mediaError(err, s.cfg.MaxRecipients))
		return
	}
	c := &collector{s: s, mode: mode}
	// Every part is read and the file uploaded: finish what was started even if the client
	// leaves, so that a retry of the request finds duplicates, not a half campaign.
	sum, err := s.prod.Campaign(context.WithoutCancel(r.Context()), camp.campaign, rows, opt, c.add)
	if err == nil {
		writeJSON(w, http.StatusAccepted, Accepted{Campaign: camp.campaign, Summary: sum, Outcomes: c.sorted(), Media: &rep})
		return
	}
	s.answer(w, r, camp.campaign, sum, c, err)
}

// readMultipart reads the body's parts; its errors are *bodyError values. The file, when one
// was spooled, is returned even with an error, for the caller to remove.
func (s *Server) readMultipart(w http.ResponseWriter, r *http.Request) (*campaignPart, *media.File, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, &bodyError{http.StatusBadRequest, CodeBadMultipart, "the body is not multipart/form-data with a boundary: " + err.Error()}
	}
	var (
		camp *campaignPart
		file *media.File
	)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return camp, file, multipartError(err)
		}
		if camp != nil && file != nil {
			return camp, file, &bodyError{http.StatusBadRequest, CodeBadMultipart,
				fmt.Sprintf("the body has more than %d parts: send one campaign part and one media_file part", maxParts)}
		}
		switch name := p.FormName(); name {
		case "campaign":
			if camp != nil {
				return camp, file, &bodyError{http.StatusBadRequest, CodeBadMultipart, "the campaign part is given twice"}
			}
			if camp, err = s.readCampaignPart(w, r, p); err != nil {
				return camp, file, err
			}
		case "media_file":
			if file != nil {
				return camp, file, &bodyError{http.StatusBadRequest, CodeBadMultipart, "the media_file part is given twice: a campaign sends one file"}
			}
			if file, err = media.Spool(&capped{r: p, left: s.cfg.MaxMediaBytes}, p.FileName(), s.cfg.TempDir); err != nil {
				return camp, file, mediaFileError(err, s.cfg.MaxMediaBytes)
			}
		default:
			return camp, file, &bodyError{http.StatusBadRequest, CodeBadMultipart,
				fmt.Sprintf("unknown part %q: a campaign with a media file has a campaign part and a media_file part", clip(name))}
		}
	}
	switch {
	case camp == nil:
		return camp, file, &bodyError{http.StatusBadRequest, CodeBadMultipart, "no campaign part: give the campaign (JSON, CSV or JSONL) in a part named campaign"}
	case file == nil:
		return camp, file, &bodyError{http.StatusBadRequest, CodeBadMultipart,
			"no media_file part: give the file in a part named media_file, or post the campaign alone as application/json, text/csv or application/x-ndjson"}
	}
	return camp, file, nil
}

// readCampaignPart reads the campaign part as its Content-Type says, within the limits of a
// whole campaign body (MaxBodyBytes, MaxRecipients).
func (s *Server) readCampaignPart(w http.ResponseWriter, r *http.Request, p *multipart.Part) (*campaignPart, error) {
	ct := p.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	pr := &partReader{r: p}
	body := http.MaxBytesReader(w, io.NopCloser(pr), s.cfg.MaxBodyBytes)
	switch mt {
	case "application/json":
		req, err := decodeCampaign(body, s.cfg.MaxRecipients)
		if err != nil {
			if pr.err != nil {
				// The part broke off (or the whole body passed its limit): not the JSON's fault.
				return nil, multipartError(pr.err)
			}
			return nil, err
		}
		rows := func(yield func(producer.Row) bool) {
			for _, f := range req.Recipients {
				if !yield(producer.Row{Fields: f}) {
					return
				}
			}
		}
		return &campaignPart{campaign: req.Campaign, defaults: req.Defaults, priority: req.Priority, rows: rows}, nil
	case "text/csv", "application/x-ndjson", "application/jsonl", "application/x-jsonlines":
		campaign, defaults, err := streamParams(r)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, multipartError(err)
		}
		var rows iter.Seq[producer.Row]
		if mt == "text/csv" {
			rows = producer.ReadCSV(bytes.NewReader(b))
		} else {
			rows = producer.ReadJSONL(bytes.NewReader(b))
		}
		return &campaignPart{campaign: campaign, defaults: defaults, priority: r.URL.Query().Get("priority"),
			rows: limitRows(rows, defaults, s.cfg.MaxRecipients)}, nil
	}
	return nil, &bodyError{http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
		fmt.Sprintf("the campaign part's Content-Type %q is not taken: give application/json, text/csv or application/x-ndjson "+
			"(curl: -F 'campaign=@list.csv;type=text/csv')", clip(ct))}
}

// partReader remembers the error, other than EOF, that reading a part ended with.
type partReader struct {
	r   io.Reader
	err error
}

func (p *partReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err != nil && err != io.EOF {
		p.err = err
	}
	return n, err
}

// errMediaPartTooLarge stops a media_file part that passes MaxMediaBytes.
var errMediaPartTooLarge = errors.New("media_file part too large")

// capped reads at most left bytes of r, then fails with errMediaPartTooLarge if there is more.
type capped struct {
	r    io.Reader
	left int64
}

func (c *capped) Read(b []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		if n, _ := c.r.Read(one[:]); n > 0 {
			return 0, errMediaPartTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	return n, err
}

// multipartError is the problem of a body mime/multipart could not read.
func multipartError(err error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return &bodyError{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("the body is over %d bytes", mb.Limit)}
	}
	return &bodyError{http.StatusBadRequest, CodeBadMultipart, "the multipart body is malformed: " + err.Error()}
}

// mediaFileError is the problem of a media_file part that could not be taken.
func mediaFileError(err error, maxMedia int64) error {
	var le *media.LimitError
	switch {
	case errors.Is(err, errMediaPartTooLarge):
		return &bodyError{http.StatusRequestEntityTooLarge, CodeMediaTooLarge,
			fmt.Sprintf("the media_file is over %d bytes, the most this server takes (and 100 MB is WhatsApp's largest limit)", maxMedia)}
	case errors.As(err, &le) && le.TooLarge():
		return &bodyError{http.StatusRequestEntityTooLarge, CodeMediaTooLarge, le.Error()}
	case errors.As(err, &le) && le.MIME == "":
		return &bodyError{http.StatusBadRequest, CodeBadMultipart, "the media_file part is empty"}
	case errors.As(err, &le):
		return &bodyError{http.StatusUnsupportedMediaType, CodeUnsupportedMediaFile, le.Error()}
	}
	return multipartError(err)
}

// mediaError is the problem of a campaign whose media could not be prepared; nothing of it was
// enqueued.
func mediaError(err error, maxRecipients int) error {
	var (
		re *producer.ReadError
		ke *kaleyra.Error
	)
	switch {
	case errors.Is(err, errTooManyRecipients):
		return &bodyError{http.StatusRequestEntityTooLarge, CodeTooManyRecipients,
			fmt.Sprintf("more than %d recipients in one request; nothing was uploaded or enqueued", maxRecipients)}
	case errors.As(err, &re):
		return &bodyError{http.StatusBadRequest, CodeInvalidRequest, re.Error() + "; nothing was uploaded or enqueued"}
	case errors.Is(err, media.ErrMediaConflict), errors.Is(err, media.ErrTooManySenders):
		return &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &bodyError{http.StatusServiceUnavailable, CodeRedisUnavailable, "the request was cancelled; nothing was enqueued: " + err.Error()}
	case errors.As(err, &ke), errors.Is(err, media.ErrBadMediaID):
		return &bodyError{http.StatusBadGateway, CodeMediaUploadFailed, "Kaleyra did not take the media_file; nothing was enqueued: " + err.Error()}
	}
	return &bodyError{http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer; nothing was uploaded or enqueued: " + err.Error()}
}

// clip shortens a client's text for a problem's detail.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > 80 {
		return strings.ToValidUTF8(s[:80], "") + "…"
	}
	return s
}
