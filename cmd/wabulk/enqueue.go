package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/termline"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

type enqueueFlags struct {
	campaignFlags
	rejects string
	json    bool
}

func newEnqueueCmd() *cobra.Command {
	var fl enqueueFlags
	cmd := &cobra.Command{
		Use:   "enqueue [flags] FILE|-",
		Short: "Enqueue one job per recipient of a CSV or JSONL campaign file",
		Long: `enqueue reads a campaign file (CSV with a header row, or JSONL; '-' reads stdin) and puts one job
per recipient into the queue. Columns: to (required; several numbers separated by commas), type,
media_id, media_link, caption, filename, ref, ref1, ref2, wa_source, from. Flags give campaign-wide
defaults that a row's own column overrides. Invalid rows are reported on stderr as "line N: reason"
and do not stop the others. The last stdout line is "enqueued N, duplicates N, rejected N", with ", suppressed N" when
recipients on the suppression list (wabulk suppress) were skipped.

--media-file uploads an image or document through Kaleyra's Upload Media Files API once per sender
the rows name (the file is read first to find them) and sends every row without media of its own
by that media id; the id is cached in Redis for 25 days per sender and file, so a re-run does not
upload again. The file's size and type are checked first; if an upload fails, nothing is enqueued.
Exit status: 0 all enqueued or duplicates, 1 some rows rejected, 2 nothing could be done.`,
		Args: cobra.ExactArgs(1),
	}
	load := withEnvFlags(cmd, flagRedisURL, flagQueue, flagMaxRetry, flagRetention)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := runEnqueue(cmd.Context(), args[0], &fl, load, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return err
			}
			return &exitError{code: 2, err: err}
		}
		return nil
	}
	// Bad flags are "nothing could be done": exit 2 like the other failures to start.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	f := cmd.Flags()
	fl.register(f)
	f.StringVar(&fl.rejects, "rejects", "", "write rejected rows to this CSV file (line, reason, then the columns) to fix and resubmit")
	f.BoolVar(&fl.json, "json", false, "print the summary as a JSON object")
	return cmd
}

func runEnqueue(ctx context.Context, path string, fl *enqueueFlags, load func() (config.Config, error), stdout, stderr io.Writer) error {
	cfg, err := load()
	if err != nil {
		return err
	}
	campaign, in, size, cleanup, err := fl.open(path)
	if err != nil {
		return err
	}
	defer cleanup()
	counted := &countingReader{r: in}
	rows := fl.rows(counted)

	var rejects *rejectWriter
	if fl.rejects != "" {
		if rejects, err = newRejectWriter(fl.rejects); err != nil {
			return err
		}
	}

	var file *media.File
	if fl.mediaFile != "" {
		// Checked before Redis or Kaleyra is called: a file WhatsApp refuses stops here.
		if file, err = media.Open(fl.mediaFile, ""); err != nil {
			return err
		}
	}

	opt, err := cfg.RedisConnOpt()
	if err != nil {
		return err
	}
	// go-redis logs every failed dial; the error this command returns already names the cause.
	redis.SetLogger(quietLogger{})
	rdb, err := config.RedisClient(opt)
	if err != nil {
		return err
	}
	defer rdb.Close()
	pc := producerConfig(cfg)
	p, err := producer.NewFromClient(rdb, pc)
	if err != nil {
		return err
	}

	fmt.Fprintf(stderr, "campaign %s\n", campaign)
	options := fl.options()
	var mediaReport *media.Report
	if file != nil {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis at %s: %w: %w", redisName(cfg), producer.ErrRedisUnreachable, err)
		}
		u, err := mediaUploader(cfg, store.New(rdb, pc.Queue, pc.Retention))
		if err != nil {
			return err
		}
		var rep media.Report
		rows, options, rep, err = u.Prepare(ctx, file, rows, options, pc.DefaultFrom)
		if err != nil {
			return fmt.Errorf("nothing enqueued: %w", err)
		}
		counted.Seek(0, io.SeekStart) // the progress counts the enqueue's read, not the first
		mediaReport = &rep
		fmt.Fprintln(stderr, rep.String())
	}
	prog := newProgress(stderr, size, counted)
	s, runErr := p.Campaign(ctx, campaign, rows, options,
		func(o producer.Outcome) {
			if o.Status == producer.StatusRejected {
				prog.line.Print(fmt.Sprintf("line %d: %s", o.Line, o.Reason))
				if rejects != nil {
					rejects.write(o)
				}
			}
			prog.tick(o)
		})
	prog.done()
	if rejects != nil {
		if err := rejects.close(); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	if runErr != nil && s == (producer.Summary{}) {
		if errors.Is(runErr, producer.ErrRedisUnreachable) {
			return fmt.Errorf("redis at %s: %w", redisName(cfg), runErr)
		}
		return runErr
	}
	switch {
	case fl.dryRun:
		fmt.Fprintf(stderr, "dry run: %d valid, nothing enqueued\n", s.Valid)
	case fl.strict && s.Rejected > 0 && runErr == nil:
		fmt.Fprintf(stderr, "strict: nothing enqueued because %d rows are invalid\n", s.Rejected)
	}
	if s == (producer.Summary{}) && runErr == nil {
		fmt.Fprintln(stderr, "the file holds no rows")
	}
	if s.NotAttempted > 0 {
		fmt.Fprintf(stderr, "not attempted %d\n", s.NotAttempted)
	}
	if fl.json {
		out := struct {
			Campaign string `json:"campaign"`
			producer.Summary
			DryRun bool          `json:"dry_run,omitempty"`
			Media  *media.Report `json:"media,omitempty"`
			Error  string        `json:"error,omitempty"`
		}{Campaign: campaign, Summary: s, DryRun: fl.dryRun, Media: mediaReport}
		if runErr != nil {
			out.Error = runErr.Error()
		}
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
	} else {
		line := fmt.Sprintf("enqueued %d, duplicates %d, rejected %d", s.Enqueued, s.Duplicates, s.Rejected)
		if s.Suppressed > 0 {
			line += fmt.Sprintf(", suppressed %d", s.Suppressed)
		}
		fmt.Fprintln(stdout, line)
	}
	if runErr != nil {
		return &exitError{code: 2, err: fmt.Errorf("stopped: %w", runErr)}
	}
	if s.Rejected > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d rejected (see the line N: messages above)", s.Rejected)}
	}
	return nil
}

func enqueueFormat(path, flag string) (string, error) {
	switch strings.ToLower(flag) {
	case "csv", "jsonl":
		return strings.ToLower(flag), nil
	case "":
	default:
		return "", fmt.Errorf("--format %q: want csv or jsonl", flag)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return "jsonl", nil
	}
	return "csv", nil
}

// openCampaign opens the file (or stdin) and returns its size when known (for the ETA).
// Strict reads the input twice, so stdin is spooled to a temporary file first.
func openCampaign(path string, rereadable bool) (io.Reader, int64, func(), error) {
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("campaign file: %w", err)
		}
		var size int64 = -1
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		return f, size, func() { f.Close() }, nil
	}
	if !rereadable {
		return os.Stdin, -1, func() {}, nil
	}
	tmp, err := os.CreateTemp("", "wabulk-stdin-*")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("spool stdin to read it twice: %w", err)
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, os.Stdin)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("spool stdin to read it twice: %w", err)
	}
	return tmp, n, cleanup, nil
}

// countingReader counts bytes read for the progress line; it passes Seek through so the
// producer can read the file twice (--strict).
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	s, ok := c.r.(io.Seeker)
	if !ok {
		return 0, errors.New("not seekable")
	}
	pos, err := s.Seek(off, whence)
	if err == nil {
		c.n.Store(pos)
	}
	return pos, err
}

// rejectWriter writes rejected rows as CSV: line, reason, then the row's own columns, so the
// file can be fixed and enqueued again.
type rejectWriter struct {
	f *os.File
	w *csv.Writer
}

func newRejectWriter(path string) (*rejectWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--rejects: %w", err)
	}
	w := csv.NewWriter(f)
	w.Write(append([]string{"line", "reason"}, job.Columns...))
	return &rejectWriter{f: f, w: w}, nil
}

func (r *rejectWriter) write(o producer.Outcome) {
	rec := []string{strconv.Itoa(o.Line), safeCell(o.Reason)}
	for _, c := range job.Columns {
		rec = append(rec, safeCell(*o.Fields.Ptr(c)))
	}
	r.w.Write(rec)
}

// safeCell keeps a spreadsheet from running a cell of the rejects file as a formula: the file
// is meant to be opened and fixed, and its cells are the rows as a stranger wrote them, so
// "=HYPERLINK(…)" or "@SUM(…)" would run on the operator's machine. A cell starting with
// = + - @, a tab or a CR gets a leading single quote (OWASP's advice), except a plain number
// ("+919876543210", "-3"): a number runs nothing, and quoting every phone number would make the
// `to` column unusable.
func safeCell(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if (s[0] == '+' || s[0] == '-') && len(s) > 1 && strings.Trim(s[1:], "0123456789 .()-") == "" {
		return s
	}
	return "'" + s
}

func (r *rejectWriter) close() error {
	r.w.Flush()
	return errors.Join(r.w.Error(), r.f.Close())
}

// progress reports how far the run is on a status line.
type progress struct {
	line  *termline.Line
	size  int64
	read  *countingReader
	start time.Time
	n     int
	sum   producer.Summary
}

func newProgress(w io.Writer, size int64, read *countingReader) *progress {
	return &progress{line: termline.New(w, termline.IsTerminal(w), 5*time.Second), size: size, read: read, start: time.Now()}
}

func (p *progress) tick(o producer.Outcome) {
	p.n++
	p.sum.Add(o)
	if p.n%64 != 0 {
		return // time.Now per outcome would be most of the cost of a fast run
	}
	if now := time.Now(); p.line.Due(now) {
		p.line.Show(p.message(now))
	}
}

func (p *progress) message(now time.Time) string {
	el := now.Sub(p.start).Seconds()
	rate := float64(p.n) / max(el, 1e-9)
	msg := fmt.Sprintf("%d recipients (%d enqueued, %d duplicates, %d rejected), %.0f/s", p.n, p.sum.Enqueued, p.sum.Duplicates, p.sum.Rejected, rate)
	if p.size > 0 {
		frac := min(float64(p.read.n.Load())/float64(p.size), 1)
		msg += fmt.Sprintf(", %.0f%%", frac*100)
		if frac > 0.001 {
			eta := time.Duration(el/frac*(1-frac)) * time.Second
			msg += ", ETA " + eta.Round(time.Second).String()
		}
	}
	return msg
}

func (p *progress) done() { p.line.Done(p.message(time.Now())) }

// redisName says which Redis a command uses, for messages: the cluster's nodes when
// WABULK_REDIS_CLUSTER is set, else the URL with its password hidden.
func redisName(c config.Config) string {
	if c.RedisCluster != "" {
		return "cluster " + c.RedisCluster
	}
	return redactURL(c.RedisURL)
}

// redactURL hides a password in a Redis URL before it goes into an error message.
func redactURL(s string) string { return config.RedactURL(s) }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
