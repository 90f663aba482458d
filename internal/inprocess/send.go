package inprocess

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/internal/embedded"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

// SendConfig is one `wabulk send` run: enqueue a campaign, then serve it in this process until
// every job of it is sent or dead.
type SendConfig struct {
	// Campaign is the campaign id. Required.
	Campaign string
	// Rows are the campaign's rows (producer.ReadCSV or ReadJSONL).
	Rows iter.Seq[producer.Row]
	// Options are the campaign-wide defaults and the strict / dry-run switches.
	Options producer.Options
	// MediaFile, when set, is uploaded through the worker's Kaleyra account once per sender the
	// rows name, before anything is enqueued, and sent by media id to every row without media
	// of its own (media.Uploader.Prepare); the ids are cached in Redis. Rows must then be
	// iterable twice. Default none.
	MediaFile *media.File
	// Producer says how jobs are enqueued (MaxRetry, Retention). Its Queue and DefaultFrom are
	// taken from Worker so producer and worker always agree.
	Producer producer.Config
	// Worker runs the in-process worker. With EmbeddedRedis its Redis is replaced; with Sandbox
	// its Kaleyra base URL, SID and key are.
	Worker worker.Config
	// EmbeddedRedis runs an in-process Redis instead of Worker.Redis: nothing survives the process.
	EmbeddedRedis bool
	// Sandbox, when set, runs the in-process fake Kaleyra with this configuration and points the
	// worker at it. Its Senders default to Worker.From.
	Sandbox *sandbox.Config
	// Callbacks, with Sandbox, also runs `wabulk serve`'s status-callback receiver in this process
	// on a loopback port and has the fake Kaleyra post its delivery callbacks there; the send
	// then waits for them, so the result carries delivered, read and failed counts.
	Callbacks bool
	// RedisName names the Redis in messages (a redacted URL). Default "Redis".
	RedisName string
	// Out receives one line per step: where Redis and the sandbox are, what was enqueued, an
	// interruption. Default io.Discard.
	Out io.Writer
	// Err receives rejected rows as "line N: reason". Default Out.
	Err io.Writer
	// Progress, when set, receives the campaign's counts each time they are read while the
	// campaign drains (every 100ms), for a progress display.
	Progress func(store.Counts)
	// Log receives the worker's per-attempt log lines. Default: none.
	Log *zap.Logger
}

// SendResult is what a send did. Sent, Retried and Rate count this run; Counts and the dead
// letters are the campaign's totals in the ledger (a re-run adds to an earlier run's).
type SendResult struct {
	Campaign string           `json:"campaign"`
	Enqueue  producer.Summary `json:"enqueue"`
	// Counts are the campaign's ledger counts at the end.
	Counts store.Counts `json:"counts"`
	// Sent is how many jobs Kaleyra accepted during this run.
	Sent int64 `json:"sent"`
	// Retried is how many failed attempts were retried during this run.
	Retried int64 `json:"retried"`
	// Dead is how many jobs were dead-lettered during this run, by code.
	Dead       int64            `json:"dead"`
	DeadByCode map[string]int64 `json:"dead_by_code,omitempty"`
	// Examples holds up to three of the campaign's dead letters per code.
	Examples map[string][]ops.DeadEntry `json:"examples,omitempty"`
	// Elapsed is the run's duration, enqueue included; Rate is Sent per second of it.
	Elapsed time.Duration `json:"elapsed_ns"`
	Rate    float64       `json:"rate"`
	// Interrupted is true when ctx ended before the campaign drained; Counts say what is left.
	Interrupted bool `json:"interrupted,omitempty"`
	// Embedded is true when the jobs lived in an in-process Redis (gone with the process).
	Embedded bool `json:"embedded,omitempty"`
	// Sandbox is what the in-process fake Kaleyra received and answered, when there was one.
	Sandbox *sandbox.Stats `json:"sandbox,omitempty"`
	// Media is what became of MediaFile: the media id of each sender, uploaded or reused.
	Media *media.Report `json:"media,omitempty"`
}

// Left is how many of the campaign's jobs are neither sent nor dead.
func (r SendResult) Left() int64 {
	return max(0, r.Counts.Enqueued-r.Counts.Completed-r.Counts.Dead)
}

// errWorkerStopped is returned when the in-process worker ends before the campaign drains.
var errWorkerStopped = errors.New("send: the worker stopped before the campaign finished")

// drainPoll is how often Send reads the campaign's counters (one round trip each).
const drainPoll = 100 * time.Millisecond

// Send enqueues the campaign and runs a worker in this process until the campaign's ledger
// counts show every job sent or dead (completed + dead == enqueued), or ctx ends: then the
// worker stops cleanly (in-flight jobs finish or go back to the queue) and the result says what
// is left. It writes a banner, live progress and the summary to cfg.Out.
func Send(ctx context.Context, cfg SendConfig) (res SendResult, err error) {
	start := time.Now()
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Err == nil {
		cfg.Err = cfg.Out
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.RedisName == "" {
		cfg.RedisName = "Redis"
	}
	res = SendResult{Campaign: cfg.Campaign, Embedded: cfg.EmbeddedRedis}
	waitCallbacks := func() {}

	if cfg.EmbeddedRedis {
		r, err := embedded.Start()
		if err != nil {
			return res, err
		}
		defer r.Close()
		cfg.Worker.Redis = r.ConnOpt()
		cfg.RedisName = "embedded Redis"
		fmt.Fprintf(cfg.Out, "embedded Redis on %s: in this process's memory only; nothing survives the process\n", r.Addr())
	}
	if cfg.Worker.Redis == nil {
		return res, errors.New("send: no Redis (set WABULK_REDIS_URL or use --embedded-redis)")
	}
	if cfg.Sandbox != nil {
		sc := *cfg.Sandbox
		if sc.SID == "" {
			sc.SID = sandbox.DefaultSID
		}
		if sc.APIKey == "" {
			sc.APIKey = sandbox.DefaultAPIKey
		}
		if len(sc.Senders) == 0 && cfg.Worker.From != "" {
			sc.Senders = []string{cfg.Worker.From}
		}
		if len(sc.Senders) == 0 {
			sc.Senders = []string{sandbox.DefaultSender}
		}
		if cfg.Worker.From == "" {
			cfg.Worker.From = "+" + sc.Senders[0]
		}
		if cfg.Callbacks {
			url, stop, err := startReceiver(cfg)
			if err != nil {
				return res, err
			}
			defer stop()
			sc.CallbackURL, sc.CallbackToken = url, receiverToken
		}
		sb, err := sandbox.Start(sc)
		if err != nil {
			return res, err
		}
		defer sb.Close()
		defer func() { st := sb.Stats(); res.Sandbox = &st }()
		waitCallbacks = func() { settleCallbacks(ctx, sb) }
		cfg.Worker.Kaleyra.BaseURL, cfg.Worker.Kaleyra.SID, cfg.Worker.Kaleyra.APIKey = sb.URL, sc.SID, sc.APIKey
		fmt.Fprintf(cfg.Out, "sandbox (fake Kaleyra) on %s: no real message leaves this machine\n", sb.URL)
	}
	cfg.Producer.Queue, cfg.Producer.DefaultFrom = cfg.Worker.Queue, cfg.Worker.From
	if cfg.Producer.Queue == "" {
		cfg.Producer.Queue = defaults.Queue
		cfg.Worker.Queue = cfg.Producer.Queue
	}
	if cfg.Producer.Retention <= 0 {
		cfg.Producer.Retention = cfg.Worker.Retention
	}

	rdb, err := config.RedisClient(cfg.Worker.Redis)
	if err != nil {
		return res, fmt.Errorf("send: %w", err)
	}
	defer rdb.Close()
	led := store.New(rdb, cfg.Producer.Queue, cfg.Producer.Retention)
	prod, err := producer.NewFromClient(rdb, cfg.Producer)
	if err != nil {
		return res, err
	}
	// Background: the result must be read even after ctx ends (Ctrl-C).
	bg := context.WithoutCancel(ctx)
	before, err := led.Counts(ctx, cfg.Campaign)
	if err != nil {
		return res, fmt.Errorf("%s: %w", cfg.RedisName, err)
	}
	if cfg.MediaFile != nil {
		// Before the worker starts and before any job is written: a failed upload leaves nothing.
		if res.Media, err = prepareMedia(ctx, &cfg, led); err != nil {
			return res, fmt.Errorf("nothing enqueued: %w", err)
		}
		fmt.Fprintln(cfg.Out, res.Media)
	}

	// The worker starts first so sending overlaps reading a large file. It stops when we say
	// (drained, or ctx ended), not when ctx ends on its own, so that we can wait for it.
	wctx, stopWorker := context.WithCancel(bg)
	defer stopWorker()
	werr := make(chan error, 1)
	if !cfg.Options.DryRun {
		go func() { werr <- worker.Run(wctx, cfg.Worker, cfg.Log) }()
	}
	stop := func() error {
		if cfg.Options.DryRun {
			return nil
		}
		stopWorker()
		return <-werr
	}

	res.Enqueue, err = prod.Campaign(ctx, cfg.Campaign, cfg.Rows, cfg.Options, func(o producer.Outcome) {
		if o.Status == producer.StatusRejected {
			fmt.Fprintf(cfg.Err, "line %d: %s\n", o.Line, o.Reason)
		}
	})
	s := res.Enqueue
	fmt.Fprintf(cfg.Out, "campaign %s: enqueued %d, duplicates %d, rejected %d\n", cfg.Campaign, s.Enqueued, s.Duplicates, s.Rejected)
	if err != nil && ctx.Err() == nil {
		return res, errors.Join(err, stop())
	}
	if cfg.Options.DryRun || (cfg.Options.Strict && s.Rejected > 0) {
		res.Counts, _ = led.Counts(bg, cfg.Campaign)
		res.Elapsed = time.Since(start)
		return res, nil
	}

	if cfg.Progress == nil {
		cfg.Progress = func(store.Counts) {}
	}
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	var werrEarly error
	var c store.Counts
wait:
	for {
		c, err = led.Counts(bg, cfg.Campaign)
		if err == nil {
			if c.Completed+c.Dead >= c.Enqueued {
				break wait
			}
			cfg.Progress(c)
		}
		select {
		case <-ctx.Done():
			res.Interrupted = true
			break wait
		case werrEarly = <-werr:
			if werrEarly == nil {
				werrEarly = errWorkerStopped
			}
			break wait
		case <-tick.C:
		}
	}
	if res.Interrupted {
		fmt.Fprintln(cfg.Out, "interrupted: stopping the worker (in-flight jobs finish or go back to the queue)…")
	}
	if werrEarly == nil {
		werrEarly = stop()
	}
	if !res.Interrupted {
		waitCallbacks()
		// Nothing serves the lanes once this process ends: retire them now, so the campaign
		// counts as finished and the views of the namespace need not read it (best effort: a
		// worker's upkeep retires them otherwise).
		if werrEarly == nil {
			led.RetireCampaign(bg, cfg.Campaign)
		}
	}

	res.Counts, err = led.Counts(bg, cfg.Campaign)
	if err != nil {
		return res, errors.Join(werrEarly, err)
	}
	c = res.Counts
	res.Elapsed = time.Since(start)
	res.Sent = c.Completed - before.Completed
	res.Retried = c.Retries - before.Retries
	res.Dead = max(0, c.Dead-before.Dead)
	res.DeadByCode = c.DeadCodes
	res.Rate = float64(res.Sent) / max(res.Elapsed.Seconds(), 1e-9)
	res.Examples, err = deadExamples(bg, led, cfg.Campaign, 3, logging.Masker{Full: cfg.Worker.LogPhoneNumbers})
	if err != nil {
		return res, errors.Join(werrEarly, err)
	}
	return res, werrEarly
}

// prepareMedia uploads cfg.MediaFile once per sender of cfg.Rows (or reuses the cached ids in
// led) and points cfg.Rows and cfg.Options at the rows that carry the ids.
func prepareMedia(ctx context.Context, cfg *SendConfig, led *store.Ledger) (*media.Report, error) {
	k := cfg.Worker.Kaleyra
	client, err := kaleyra.New(kaleyra.Config{SID: k.SID, APIKey: k.APIKey, Region: k.Region, BaseURL: k.BaseURL, Timeout: k.Timeout})
	if err != nil {
		return nil, err
	}
	u, err := media.NewUploader(media.Config{Kaleyra: client, Cache: led, Log: cfg.Log,
		PII: logging.Masker{Full: cfg.Worker.LogPhoneNumbers}})
	if err != nil {
		return nil, err
	}
	rows, opt, rep, err := u.Prepare(ctx, cfg.MediaFile, cfg.Rows, cfg.Options, cfg.Producer.DefaultFrom)
	if err != nil {
		return nil, err
	}
	cfg.Rows, cfg.Options = rows, opt
	return &rep, nil
}

// deadExamples returns up to n dead letters per code of campaign, the recipient masked by pii
// in its task id too.
func deadExamples(ctx context.Context, led *store.Ledger, campaign string, n int, pii logging.Masker) (map[string][]ops.DeadEntry, error) {
	out := map[string][]ops.DeadEntry{}
	err := led.DeadLetters(ctx, campaign, "", func(d store.DeadLetter) bool {
		if len(out[d.Code]) < n {
			out[d.Code] = append(out[d.Code], ops.NewDeadEntry(campaign, d, pii))
		}
		return true
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}
