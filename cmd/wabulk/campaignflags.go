package main

import (
	"fmt"
	"iter"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/wabulk/wabulk/internal/job"
	"github.com/wabulk/wabulk/producer"
)

// campaignFlags are the flags that say what a campaign file holds and how to enqueue it, shared
// by the commands that take one (`wabulk send`; `wabulk enqueue` registers the same names).
type campaignFlags struct {
	campaign, format string
	defaults         job.Fields
	strict, dryRun   bool
}

func (fl *campaignFlags) register(f *pflag.FlagSet) {
	f.StringVar(&fl.campaign, "campaign", "", "campaign id (default: the file's name without its extension)")
	f.StringVar(&fl.defaults.Type, "type", "", "media type for rows without one: image, video, audio, document, sticker")
	f.StringVar(&fl.defaults.MediaID, "media-id", "", "media id for rows without one")
	f.StringVar(&fl.defaults.MediaLink, "media-link", "", "media link (http/https) for rows without one")
	f.StringVar(&fl.defaults.Caption, "caption", "", "caption for rows without one (image, video, document)")
	f.StringVar(&fl.defaults.Filename, "filename", "", "file name for document rows without one")
	f.StringVar(&fl.defaults.Ref, "ref", "", "ref for rows without one")
	f.StringVar(&fl.defaults.Ref1, "ref1", "", "ref1 for rows without one")
	f.StringVar(&fl.defaults.Ref2, "ref2", "", "ref2 for rows without one")
	f.StringVar(&fl.defaults.WASource, "wa-source", "", "wa_source for rows without one (unknown values become api)")
	f.StringVar(&fl.defaults.From, "from", "", "sender number for rows without one (default KALEYRA_FROM)")
	f.BoolVar(&fl.strict, "strict", false, "enqueue nothing if any row is invalid")
	f.BoolVar(&fl.dryRun, "dry-run", false, "validate only, enqueue nothing")
	f.StringVar(&fl.format, "format", "", "csv or jsonl (default: by the file's extension; csv for stdin)")
}

// open opens the campaign file (or stdin for "-") and returns its id, its rows and what closes it.
func (fl *campaignFlags) open(path string) (campaign string, rows iter.Seq[producer.Row], closeFn func(), err error) {
	format, err := enqueueFormat(path, fl.format)
	if err != nil {
		return "", nil, nil, err
	}
	campaign = fl.campaign
	if campaign == "" {
		if path == "-" {
			return "", nil, nil, fmt.Errorf("reading stdin: give the campaign id with --campaign")
		}
		campaign = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if err := job.ValidCampaign(campaign); err != nil {
		return "", nil, nil, fmt.Errorf("%w (set it with --campaign)", err)
	}
	in, _, closeFn, err := openCampaign(path, fl.strict && !fl.dryRun)
	if err != nil {
		return "", nil, nil, err
	}
	if format == "jsonl" {
		return campaign, producer.ReadJSONL(in), closeFn, nil
	}
	return campaign, producer.ReadCSV(in), closeFn, nil
}

func (fl *campaignFlags) options() producer.Options {
	return producer.Options{Defaults: fl.defaults, Strict: fl.strict, DryRun: fl.dryRun}
}
