package main

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// campaignFlags are the flags that say what a campaign file holds and how to enqueue it, shared
// by the commands that take one: `wabulk enqueue` and `wabulk send`.
type campaignFlags struct {
	campaign, format string
	priority         string
	at               string
	sendAt           time.Time // --at, parsed by open
	defaults         job.Fields
	strict, dryRun   bool
	// mediaFile is uploaded once per sender and sent by media id to rows without media.
	mediaFile string
}

func (fl *campaignFlags) register(f *pflag.FlagSet) {
	f.StringVar(&fl.campaign, "campaign", "", "campaign id (default: the file's name without its extension)")
	f.StringVar(&fl.defaults.Type, "type", "", "media type for rows without one: image, video, audio, document, sticker")
	f.StringVar(&fl.defaults.MediaID, "media-id", "", "media id for rows without one")
	f.StringVar(&fl.defaults.MediaLink, "media-link", "", "media link (http/https) for rows without one")
	f.StringVar(&fl.mediaFile, "media-file", "", "image or document to upload once per sender and send by media id to rows without media (cached in Redis; needs KALEYRA_SID, KALEYRA_API_KEY)")
	f.StringVar(&fl.defaults.Caption, "caption", "", "caption for rows without one (image, video, document)")
	f.StringVar(&fl.defaults.Filename, "filename", "", "file name for document rows without one")
	f.StringVar(&fl.defaults.Ref, "ref", "", "ref for rows without one")
	f.StringVar(&fl.defaults.Ref1, "ref1", "", "ref1 for rows without one")
	f.StringVar(&fl.defaults.Ref2, "ref2", "", "ref2 for rows without one")
	f.StringVar(&fl.defaults.WASource, "wa-source", "", "wa_source for rows without one (unknown values become api)")
	f.StringVar(&fl.defaults.From, "from", "", "sender number for rows without one (default KALEYRA_FROM)")
	f.BoolVar(&fl.strict, "strict", false, "enqueue nothing if any row is invalid")
	f.BoolVar(&fl.dryRun, "dry-run", false, "validate only, enqueue nothing")
	f.StringVar(&fl.priority, "priority", "", "the campaign's share of each sender's rate: high (transactional, overtakes), normal or low (default: kept, normal for a new campaign)")
	f.StringVar(&fl.format, "format", "", "csv or jsonl (default: by the file's extension; csv for stdin)")
	f.StringVar(&fl.at, "at", "", "send nothing of the campaign before this RFC 3339 time (e.g. 2026-12-01T09:00:00+05:30); it starts within 2 s after")
}

// open resolves the campaign id (the file's name when --campaign is not given) and the format,
// and opens the file (stdin for "-"; spooled to a temporary file when --strict or --media-file
// must read it twice). size is the file's size when known, for an ETA.
func (fl *campaignFlags) open(path string) (campaign string, in io.Reader, size int64, closeFn func(), err error) {
	if fl.mediaFile != "" && (fl.defaults.MediaID != "" || fl.defaults.MediaLink != "") {
		return "", nil, 0, nil, errors.New("give --media-file, --media-id or --media-link, not two")
	}
	if fl.format, err = enqueueFormat(path, fl.format); err != nil {
		return "", nil, 0, nil, err
	}
	if fl.at != "" {
		if fl.sendAt, err = time.Parse(time.RFC3339, fl.at); err != nil {
			return "", nil, 0, nil, fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-12-01T09:00:00Z", fl.at)
		}
	}
	campaign = fl.campaign
	if campaign == "" {
		if path == "-" {
			return "", nil, 0, nil, fmt.Errorf("reading stdin: give the campaign id with --campaign")
		}
		campaign = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if err := job.ValidCampaign(campaign); err != nil {
		return "", nil, 0, nil, fmt.Errorf("%w (set it with --campaign)", err)
	}
	// --media-file reads the rows twice too: once for the senders to upload for, then to enqueue.
	in, size, closeFn, err = openCampaign(path, (fl.strict && !fl.dryRun) || fl.mediaFile != "")
	return campaign, in, size, closeFn, err
}

// rows reads in as the format open resolved.
func (fl *campaignFlags) rows(in io.Reader) iter.Seq[producer.Row] {
	if fl.format == "jsonl" {
		return producer.ReadJSONL(in)
	}
	return producer.ReadCSV(in)
}

func (fl *campaignFlags) options() producer.Options {
	return producer.Options{Defaults: fl.defaults, Strict: fl.strict, DryRun: fl.dryRun, Priority: fl.priority, SendAt: fl.sendAt}
}
