package media

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"unicode/utf8"

	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// MaxSenders is the most senders one campaign may send its media file from: the file is
// uploaded once per sender before anything is enqueued, so a file naming thousands of senders
// would mean thousands of uploads first.
const MaxSenders = 64

// Report is what Prepare did for a campaign.
type Report struct {
	// File is the media file.
	File *File `json:"file"`
	// Senders are the senders the file is sent from, in the order the rows first name them,
	// with the media id each one sends.
	Senders []SenderMedia `json:"senders"`
}

// SenderMedia is the media id one sender sends.
type SenderMedia struct {
	// Sender is the business number, E.164.
	Sender string `json:"sender"`
	// MediaID is its media id; empty in a dry run when none is cached.
	MediaID string `json:"media_id,omitempty"`
	// Uploaded is true when the file was uploaded for it now, false when the cached id was reused
	// (or, in a dry run, nothing was uploaded).
	Uploaded bool `json:"uploaded"`
}

// String says in one line what became of the file: the senders it was uploaded from, those that
// reuse a cached id, and in a dry run those it would be uploaded from.
func (r Report) String() string {
	var up, reused, pending []string
	for _, s := range r.Senders {
		switch {
		case s.Uploaded:
			up = append(up, s.Sender)
		case s.MediaID != "":
			reused = append(reused, s.Sender)
		default:
			pending = append(pending, s.Sender)
		}
	}
	var parts []string
	if len(up) > 0 {
		parts = append(parts, "uploaded from "+strings.Join(up, ", "))
	}
	if len(reused) > 0 {
		parts = append(parts, "cached id reused for "+strings.Join(reused, ", "))
	}
	if len(pending) > 0 {
		parts = append(parts, "would be uploaded from "+strings.Join(pending, ", "))
	}
	if len(parts) == 0 {
		parts = append(parts, "no row sends it")
	}
	return fmt.Sprintf("media %s (%s, %d bytes, sha256 %.12s…): %s", r.File.Name, r.File.MIME, r.File.Size,
		r.File.SHA256, strings.Join(parts, "; "))
}

// Uploads counts the senders the file was uploaded for in this run.
func (r Report) Uploads() int {
	n := 0
	for _, s := range r.Senders {
		if s.Uploaded {
			n++
		}
	}
	return n
}

// ErrMediaConflict is returned (wrapped) when a campaign gives a media file and also a default
// media_id or media_link, or a default type the file cannot be sent as.
var ErrMediaConflict = errors.New("media conflict")

// ErrTooManySenders is returned (wrapped) when a campaign sends its media file from more than
// MaxSenders senders.
var ErrTooManySenders = errors.New("too many senders")

// dryRunID stands for an id not uploaded in a dry run, so the rows validate as they will.
const dryRunID = "dry-run-not-uploaded"

// Prepare makes a campaign send f: it reads rows once to find every sender that will send the
// file (a row's own from, else the campaign's, else defaultFrom, the producer's default
// sender), gets the file's media id for each of them (Uploader.ID: cached, or uploaded now), and
// only then returns the rows to enqueue, each row without media of its own carrying its
// sender's id, and opt with the file's kind as the default type (and its name as a document's
// default filename).
//
// Reading the rows twice, rather than uploading lazily before each sender's first job, is what
// keeps a failure from leaving a campaign half enqueued: when an upload fails (or rows hold more
// than MaxSenders senders, or a *producer.ReadError ends them) Prepare returns the error before
// a single job is written. rows must therefore be iterable twice (ReadCSV and ReadJSONL on a
// file or a bytes.Reader are). A row whose sender was not seen the first time (the file
// changed in between) is rejected rather than sent without media. In a dry run (opt.DryRun)
// nothing is uploaded: rows carry the cached id, or a stand-in that validates as one.
func (u *Uploader) Prepare(ctx context.Context, f *File, rows iter.Seq[producer.Row], opt producer.Options, defaultFrom string) (iter.Seq[producer.Row], producer.Options, Report, error) {
	rep := Report{File: f}
	d := opt.Defaults
	if strings.TrimSpace(d.MediaID) != "" || strings.TrimSpace(d.MediaLink) != "" {
		return nil, opt, rep, fmt.Errorf("%w: a media file and a default media_id or media_link: give one", ErrMediaConflict)
	}
	switch t := strings.ToLower(strings.TrimSpace(d.Type)); t {
	case "":
		opt.Defaults.Type = f.Kind
	case f.Kind:
	default:
		return nil, opt, rep, fmt.Errorf("%w: type %q, but the media file %s is %s, sent as %s", ErrMediaConflict, clipText(t), f.Name, f.MIME, f.Kind)
	}
	if f.Kind == "document" && d.Filename == "" && documentName(f.Name) {
		opt.Defaults.Filename = f.Name
	}
	defaults := opt.Defaults

	var senders []string
	seen := map[string]int{}
	for row := range rows {
		var re *producer.ReadError
		if errors.As(row.Err, &re) {
			return nil, opt, rep, re
		}
		sender, ok := fileSender(defaults, row, defaultFrom)
		if !ok {
			continue
		}
		if _, dup := seen[sender]; !dup {
			if len(senders) == MaxSenders {
				return nil, opt, rep, fmt.Errorf("%w: the campaign sends its media file from more than %d senders; it is uploaded once per sender before anything is enqueued: split the campaign", ErrTooManySenders, MaxSenders)
			}
			seen[sender] = len(senders)
			senders = append(senders, sender)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, opt, rep, err
	}
	ids := make(map[string]string, len(senders))
	for _, s := range senders {
		sm := SenderMedia{Sender: s}
		if opt.DryRun {
			if id, ok, err := u.cached(ctx, s, f); err != nil {
				return nil, opt, rep, err
			} else if ok {
				sm.MediaID = id
			}
			ids[s] = cmp.Or(sm.MediaID, dryRunID)
		} else {
			id, uploaded, err := u.ID(ctx, s, f)
			if err != nil {
				return nil, opt, rep, err
			}
			sm.MediaID, sm.Uploaded, ids[s] = id, uploaded, id
		}
		rep.Senders = append(rep.Senders, sm)
	}
	out := func(yield func(producer.Row) bool) {
		for row := range rows {
			if sender, ok := fileSender(defaults, row, defaultFrom); ok {
				merged := defaults.Over(row.Fields)
				switch id, known := ids[sender]; {
				case !known:
					row.Err = fmt.Errorf("sender %s sends the media file but was not in the campaign when it was first read (did the file change?): nothing uploaded for it", sender)
				case strings.ToLower(strings.TrimSpace(merged.Type)) != f.Kind:
					row.Err = fmt.Errorf("type %q does not match the media file %s (%s, sent as %s)", clipText(merged.Type), f.Name, f.MIME, f.Kind)
				default:
					row.Fields.MediaID = id
				}
			}
			if !yield(row) {
				return
			}
		}
	}
	return out, opt, rep, nil
}

// cached is the cached id of f for sender, without uploading.
func (u *Uploader) cached(ctx context.Context, sender string, f *File) (string, bool, error) {
	if u.cfg.Cache == nil {
		return "", false, nil
	}
	return u.cfg.Cache.MediaID(ctx, mediaKey(u, sender, f))
}

// fileSender is the sender (E.164) a row sends the media file from, and false when the row
// does not send it: it names media of its own, holds no recipient, could not be read, or has no
// valid sender (the producer rejects such a row).
func fileSender(defaults job.Fields, row producer.Row, defaultFrom string) (string, bool) {
	if row.Err != nil || strings.TrimSpace(row.Fields.MediaID) != "" || strings.TrimSpace(row.Fields.MediaLink) != "" {
		return "", false
	}
	merged := defaults.Over(row.Fields)
	if len(job.Recipients(merged.To)) == 0 {
		return "", false
	}
	from := strings.TrimSpace(merged.From)
	if from == "" {
		from = defaultFrom
	}
	if from == "" {
		return "", false
	}
	n, err := job.NormalizeNumber(from)
	return n, err == nil
}

// documentName reports whether a file name can be a document's filename as job checks it.
func documentName(name string) bool {
	return utf8.ValidString(name) && !strings.ContainsAny(name, "/\\\x00") && utf8.RuneCountInString(name) <= job.MaxFilename &&
		strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}

func clipText(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		return string([]rune(s)[:40]) + "…"
	}
	return s
}
