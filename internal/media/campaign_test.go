package media_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// campaignCSV: two rows from the default sender, one from the second sender, one with its own
// link, one whose type the file cannot be, one without a recipient.
const campaignCSV = `to,from,media_link,type,ref
+919876543210,,,,a
+919876543211,+919000000002,,,b
+919876543212,,https://example.com/own.jpg,,c
+919876543213,,,video,d
,,,,e
+919876543214,,,,f
`

func rows(csv string) iter.Seq[producer.Row] { return producer.ReadCSV(bytes.NewReader([]byte(csv))) }

// collect runs rows through, keyed by ref.
func collect(rows iter.Seq[producer.Row]) map[string]producer.Row {
	out := map[string]producer.Row{}
	for r := range rows {
		out[r.Fields.Ref] = r
	}
	return out
}

func TestPrepareUploadsOncePerSenderBeforeAnyRowIsReturned(t *testing.T) {
	w := newWorld(t)
	u := w.uploader(t, true)
	f := openJPEG(t)
	out, opt, rep, err := u.Prepare(context.Background(), f, rows(campaignCSV), producer.Options{}, sender)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Defaults.Type != "image" || opt.Defaults.Filename != "" {
		t.Errorf("defaults %+v, want type image and no filename", opt.Defaults)
	}
	if len(rep.Senders) != 2 || rep.Senders[0].Sender != sender || rep.Senders[1].Sender != sender2 || rep.Uploads() != 2 || rep.File != f {
		t.Fatalf("report %+v", rep)
	}
	if n := w.sb.Stats().Uploaded; n != 2 {
		t.Fatalf("%d uploads before the rows are read, want 2", n)
	}
	got := collect(out)
	id1, id2 := rep.Senders[0].MediaID, rep.Senders[1].MediaID
	for ref, want := range map[string]string{"a": id1, "b": id2, "f": id1, "c": "", "e": ""} {
		if r := got[ref]; r.Fields.MediaID != want || r.Err != nil {
			t.Errorf("row %s: media_id %q err %v, want %q", ref, r.Fields.MediaID, r.Err, want)
		}
	}
	if r := got["c"]; r.Fields.MediaLink != "https://example.com/own.jpg" {
		t.Errorf("a row's own link was replaced: %+v", r.Fields)
	}
	if r := got["d"]; r.Err == nil || !strings.Contains(r.Err.Error(), `type "video" does not match the media file a.jpg (image/jpeg, sent as image)`) {
		t.Errorf("row of another type: %v", r.Err)
	}

	// Again: every id comes from the cache.
	_, _, rep, err = u.Prepare(context.Background(), f, rows(campaignCSV), producer.Options{}, sender)
	if err != nil || rep.Uploads() != 0 || rep.Senders[0].MediaID != id1 || rep.Senders[1].MediaID != id2 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
	if n := w.sb.Stats().Uploaded; n != 2 {
		t.Errorf("%d uploads after a second run, want still 2", n)
	}
}

func TestPrepareRefusesConflictsAndStopsBeforeUploading(t *testing.T) {
	w := newWorld(t)
	u := w.uploader(t, true)
	f := openJPEG(t)
	many := "to,from\n"
	for i := range media.MaxSenders + 1 {
		many += fmt.Sprintf("+919876543210,+9198200%05d\n", i)
	}
	for _, tc := range []struct {
		name string
		csv  string
		opt  producer.Options
		want func(error) bool
	}{
		{"a default media id", "to\n+919876543210\n", producer.Options{Defaults: job.Fields{MediaID: "42"}},
			func(err error) bool { return errors.Is(err, media.ErrMediaConflict) }},
		{"a default link", "to\n+919876543210\n", producer.Options{Defaults: job.Fields{MediaLink: "https://x.test/a.jpg"}},
			func(err error) bool { return errors.Is(err, media.ErrMediaConflict) }},
		{"a default type the file is not", "to\n+919876543210\n", producer.Options{Defaults: job.Fields{Type: "Document"}},
			func(err error) bool { return errors.Is(err, media.ErrMediaConflict) }},
		{"a broken file", "phone\n+919876543210\n", producer.Options{},
			func(err error) bool { var re *producer.ReadError; return errors.As(err, &re) }},
		{"too many senders", many, producer.Options{},
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "more than 64 senders") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := u.Prepare(context.Background(), f, rows(tc.csv), tc.opt, sender)
			if !tc.want(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if n := len(w.sb.Uploads()); n != 0 {
				t.Errorf("%d uploads", n)
			}
		})
	}
	// The matching type in any case is no conflict.
	if _, opt, _, err := u.Prepare(context.Background(), f, rows("to\n+919876543210\n"), producer.Options{Defaults: job.Fields{Type: " Image"}}, sender); err != nil || opt.Defaults.Type != " Image" {
		t.Errorf("type Image: %v", err)
	}
}

func TestPrepareDryRunUploadsNothing(t *testing.T) {
	w := newWorld(t)
	u := w.uploader(t, true)
	out, _, rep, err := u.Prepare(context.Background(), openJPEG(t), rows(campaignCSV), producer.Options{DryRun: true}, sender)
	if err != nil || rep.Uploads() != 0 || len(rep.Senders) != 2 || rep.Senders[0].MediaID != "" {
		t.Fatalf("%+v %v", rep, err)
	}
	if r := collect(out)["a"]; r.Fields.MediaID == "" || job.CheckMediaID(r.Fields.MediaID) != nil {
		t.Errorf("a dry-run row carries %q", r.Fields.MediaID)
	}
	if n := len(w.sb.Uploads()); n != 0 {
		t.Errorf("%d uploads in a dry run", n)
	}
}

func TestPrepareNamesADocumentAfterItsFile(t *testing.T) {
	w := newWorld(t)
	f, err := media.Open(write(t, "Spring brochure.pdf", pdfBytes), "")
	if err != nil {
		t.Fatal(err)
	}
	_, opt, _, err := w.uploader(t, true).Prepare(context.Background(), f, rows("to\n+919876543210\n"), producer.Options{}, sender)
	if err != nil || opt.Defaults.Type != "document" || opt.Defaults.Filename != "Spring brochure.pdf" {
		t.Fatalf("%+v %v", opt.Defaults, err)
	}
	_, opt, _, _ = w.uploader(t, true).Prepare(context.Background(), f, rows("to\n+919876543210\n"),
		producer.Options{Defaults: job.Fields{Filename: "given.pdf"}}, sender)
	if opt.Defaults.Filename != "given.pdf" {
		t.Errorf("a given filename was replaced: %q", opt.Defaults.Filename)
	}
}

// changing yields one set of rows the first time and another after.
func changing(first, then string) iter.Seq[producer.Row] {
	n := 0
	return func(yield func(producer.Row) bool) {
		n++
		csv := first
		if n > 1 {
			csv = then
		}
		for r := range rows(csv) {
			if !yield(r) {
				return
			}
		}
	}
}

// A sender that appears only when the rows are read the second time has no id: its rows are
// rejected, never sent without media.
func TestPrepareRejectsASenderTheFirstReadDidNotSee(t *testing.T) {
	w := newWorld(t)
	out, _, _, err := w.uploader(t, true).Prepare(context.Background(), openJPEG(t),
		changing("to,ref\n+919876543210,a\n", "to,from,ref\n+919876543210,+919000000002,a\n"), producer.Options{}, sender)
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(out)["a"]; r.Err == nil || !strings.Contains(r.Err.Error(), "did the file change?") || r.Fields.MediaID != "" {
		t.Errorf("%+v", r)
	}
}

// Prepare and the producer together: every job carries its sender's media id and no link.
func TestPreparedCampaignJobsCarryTheirSendersID(t *testing.T) {
	w := newWorld(t)
	rs := redistest.Start(t)
	p, err := producer.NewFromClient(rs.Client(t), producer.Config{DefaultFrom: sender})
	if err != nil {
		t.Fatal(err)
	}
	out, opt, rep, err := w.uploader(t, true).Prepare(context.Background(), openJPEG(t), rows(campaignCSV), producer.Options{}, sender)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := p.Campaign(context.Background(), "spring", out, opt, nil)
	if err != nil || sum.Enqueued != 4 || sum.Rejected != 2 {
		t.Fatalf("%+v %v, want 4 enqueued (a, b, c, f) and 2 rejected (d, e)", sum, err)
	}
	insp := asynq.NewInspector(rs.ConnOpt(t))
	defer insp.Close()
	ids := map[string]string{sender: rep.Senders[0].MediaID, sender2: rep.Senders[1].MediaID}
	led := store.New(nil, "whatsapp", 0)
	seen := 0
	for _, s := range []string{sender, sender2} {
		tasks, err := insp.ListPendingTasks(led.LaneName("spring", s))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			pl, err := job.Decode(task.Payload)
			if err != nil {
				t.Fatal(err)
			}
			seen++
			switch {
			case pl.Ref == "c":
				if pl.MediaLink == "" || pl.MediaID != "" {
					t.Errorf("row c lost its own link: %+v", pl)
				}
			case pl.MediaID != ids[pl.From] || pl.MediaLink != "" || pl.Type != "image":
				t.Errorf("job %+v, want media_id %s of %s", pl, ids[pl.From], pl.From)
			}
		}
	}
	if seen != 4 {
		t.Errorf("%d jobs in the lanes, want 4", seen)
	}
}
