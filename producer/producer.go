// Package producer is how jobs get into wabulk: the Go API other Go systems import, and the one
// path that `wabulk enqueue`, `wabulk send` and the HTTP API all call. It validates each
// recipient with package job, enqueues one asynq task per recipient (many per Redis call, in
// asynq's own layout: see internal/store/asynq.go) with a TaskID that makes a re-run a no-op, counts what
// it enqueued in the ledger, and reads campaign files (CSV, JSONL) as streams so memory stays
// flat whatever their size.
package producer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/batch"
	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// Config is how a Producer enqueues. The zero value of each field means its default.
type Config struct {
	// Queue is the asynq queue jobs go to (WABULK_QUEUE). Defaults to "whatsapp".
	Queue string
	// MaxRetry is each job's retry budget for transient failures (WABULK_MAX_RETRY).
	// Defaults to 8; a negative value means no retries.
	MaxRetry int
	// Retention is how long a completed job stays in Redis (WABULK_RETENTION); it is also the
	// window in which a re-run of the campaign is recognised as duplicates. Defaults to 24h.
	Retention time.Duration
	// DefaultFrom is the sender number used when a row names none (KALEYRA_FROM). The sender
	// is resolved here, not left to the worker, because it is part of the TaskID: the id must
	// name the sender that will really send, or a re-run under another KALEYRA_FROM would send
	// twice. Without it, a row that names no sender is rejected ("no sender: …").
	DefaultFrom string
	// Concurrency is how many enqueues Campaign runs at once. Defaults to 16.
	Concurrency int
}

func (c Config) withDefaults() Config {
	if c.Queue == "" {
		c.Queue = defaults.Queue
	}
	switch {
	case c.MaxRetry == 0:
		c.MaxRetry = defaults.MaxRetry
	case c.MaxRetry < 0:
		c.MaxRetry = 0
	}
	if c.Retention <= 0 {
		c.Retention = defaults.Retention
	}
	if c.Concurrency <= 0 {
		c.Concurrency = defaults.EnqueueConcurrency
	}
	return c
}

// Producer enqueues validated jobs. It is safe for concurrent use.
type Producer struct {
	cfg    Config
	rdb    redis.UniversalClient
	queue  *store.Enqueuer
	ledger *store.Ledger
	from   string // cfg.DefaultFrom in E.164
	owns   bool
	// declared holds when each lane (and priority) was last declared, to declare it once a
	// minute rather than once a batch.
	declared sync.Map
}

// New returns a Producer with its own Redis connections; Close releases them.
func New(r asynq.RedisConnOpt, cfg Config) (*Producer, error) {
	if r == nil {
		return nil, errors.New("producer: no Redis connection options")
	}
	rdb, err := config.RedisClient(r)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	p, err := NewFromClient(rdb, cfg)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	p.owns = true
	return p, nil
}

// NewFromClient returns a Producer on a Redis client the caller owns and closes. Tasks are
// written through rdb in asynq's own layout, many per Redis call (asynq has no batch enqueue).
func NewFromClient(rdb redis.UniversalClient, cfg Config) (*Producer, error) {
	if rdb == nil {
		return nil, errors.New("producer: nil Redis client")
	}
	cfg = cfg.withDefaults()
	if strings.TrimSpace(cfg.Queue) == "" {
		return nil, fmt.Errorf("producer: queue name %q is blank", cfg.Queue) // asynq refuses it
	}
	led := store.New(rdb, cfg.Queue, cfg.Retention)
	p := &Producer{cfg: cfg, rdb: rdb, ledger: led, queue: led.Enqueuer(job.TaskType, cfg.MaxRetry)}
	if cfg.DefaultFrom != "" {
		from, err := job.NormalizeNumber(cfg.DefaultFrom)
		if err != nil {
			return nil, fmt.Errorf("producer: default sender (KALEYRA_FROM): %w", err)
		}
		p.from = from
	}
	return p, nil
}

// Close releases the connections New opened; for NewFromClient it does nothing.
func (p *Producer) Close() error {
	if !p.owns {
		return nil
	}
	return p.rdb.Close()
}

// Status is what became of one recipient.
type Status string

// The statuses of an Outcome.
const (
	// StatusEnqueued: a new job is in the queue.
	StatusEnqueued Status = "enqueued"
	// StatusDuplicate: the job was already queued or sent (same campaign, sender and recipient
	// within the retention window), or the recipient came earlier in the same campaign.
	StatusDuplicate Status = "duplicate"
	// StatusRejected: the row is invalid; Reason says why. Nothing was enqueued for it.
	StatusRejected Status = "rejected"
	// StatusValid: a dry run found the recipient valid; nothing was enqueued.
	StatusValid Status = "valid"
	// StatusSuppressed: the recipient is on the suppression list (`wabulk suppress`); nothing
	// was enqueued for it, and the campaign counts it as suppressed.
	StatusSuppressed Status = "suppressed"
)

// Outcome is the result for one recipient of a row (a row whose `to` names several numbers has
// one Outcome per number, all with the row's Index and Line).
type Outcome struct {
	Index  int    `json:"index"`          // 0-based row index
	Line   int    `json:"line,omitempty"` // file line the row starts on; 0 when not from a file
	To     string `json:"to,omitempty"`   // the number, in E.164 once valid, else as given
	TaskID string `json:"task_id,omitempty"`
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"` // why a row was rejected, in words a user can act on
	// Fields are the row's own fields (without the defaults), with To narrowed to this
	// recipient; set on rejected outcomes so a caller can write them back out to be fixed.
	Fields job.Fields `json:"-"`
}

// Row is one row of a campaign as a reader yields it.
type Row struct {
	Line   int        // file line the row starts on; 0 when not from a file
	Fields job.Fields // the row's own values; Options.Defaults fill what is empty
	Err    error      // the reader could not parse the row: it is rejected with this reason
}

// Options change how Campaign treats a campaign's rows.
type Options struct {
	// Defaults are campaign-wide values; a row's own non-empty field beats them.
	Defaults job.Fields
	// Strict enqueues nothing if any row is invalid. Rows are read twice (validate, then
	// enqueue), so the sequence must be re-iterable (ReadCSV and ReadJSONL on a file are).
	Strict bool
	// DryRun validates every row and enqueues nothing.
	DryRun bool
	// Priority weights the campaign's share of each sender's rate against the sender's other
	// campaigns: "high" (transactional: at least 3/4 of a busy sender's rate), "normal" or
	// "low". Empty keeps the priority the campaign already has, normal for a new one.
	Priority string
	// SendAt holds the campaign until that time: nothing of it is sent before, and workers start
	// it within about a second after. Zero (or a time past) sends as soon as workers can.
	SendAt time.Time
}

// Summary counts a campaign's outcomes. Enqueued + Duplicates + Rejected + Valid + NotAttempted + Suppressed
// is the number of recipients in the rows read.
type Summary struct {
	Enqueued   int `json:"enqueued"`
	Duplicates int `json:"duplicates"`
	Rejected   int `json:"rejected"`
	// Valid counts recipients a dry run found valid (and did not enqueue).
	Valid int `json:"valid,omitempty"`
	// NotAttempted counts recipients never tried: those left when a fatal error stopped the
	// run, or every valid one when Strict found an invalid row. An enqueue whose answer was lost
	// with the connection counts here too although Redis may hold the job; a re-run reports such
	// a job as a duplicate, so re-running is always safe.
	NotAttempted int `json:"not_attempted"`
	// Suppressed counts recipients skipped because they are on the suppression list.
	Suppressed int `json:"suppressed"`
}

// Add counts one Outcome under its status.
func (s *Summary) Add(o Outcome) {
	switch o.Status {
	case StatusEnqueued:
		s.Enqueued++
	case StatusDuplicate:
		s.Duplicates++
	case StatusSuppressed:
		s.Suppressed++
	case StatusRejected:
		s.Rejected++
	case StatusValid:
		s.Valid++
	}
}

// ErrCampaignCancelled is what Campaign and Send return (wrapped, with the time) for a campaign
// that was cancelled: nothing is enqueued into it.
var ErrCampaignCancelled = store.ErrCampaignCancelled

// ErrRedisUnreachable is what Campaign returns (wrapped, with the cause) when Redis does not
// answer before any row is read: nothing was enqueued.
var ErrRedisUnreachable = errors.New("redis unreachable")

// errNoSender rejects a row that names no sender when the producer has no DefaultFrom.
var errNoSender = errors.New("no sender: give from or set KALEYRA_FROM")

// enqueueBatch is the most recipients a Campaign worker enqueues in one Redis call. A batch
// is whatever is waiting when the worker is free, so a slow reader still gets prompt enqueues.
const enqueueBatch = 64

// Send enqueues one message. A `to` holding several numbers separated by commas gives one job
// and one Outcome per number, enqueued up to 64 per Redis call. An invalid message is a rejected
// Outcome, not an error; the error is for Redis failing (or ctx ending first), and then only the
// rejected numbers have Outcomes: the valid ones were not enqueued, or their answer was lost.
func (p *Producer) Send(ctx context.Context, campaign string, f job.Fields) ([]Outcome, error) {
	tos := job.Recipients(f.To)
	if len(tos) == 0 {
		return []Outcome{{Status: StatusRejected, Reason: "to is required: give at least one phone number", Fields: f}}, nil
	}
	if err := p.ledger.CheckEnqueue(ctx, campaign); err != nil {
		return nil, err
	}
	ws := make([]work, len(tos))
	for i, to := range tos {
		ws[i] = work{to: to, fields: f, own: f}
	}
	out := make([]Outcome, 0, len(tos))
	var err error
	// At most enqueueBatch per Redis call, as in Campaign: one script call with 100,000 keys
	// holds Redis, and every other client (workers, the rate limiter), for half a second.
	for chunk := range slices.Chunk(ws, enqueueBatch) {
		// After a failed enqueue the rest is not tried, but its invalid numbers are still
		// validated and reported.
		for _, r := range p.do(ctx, campaign, "", chunk, err != nil) {
			switch {
			case r.notTried:
				err = cmp.Or(err, r.err, ctx.Err())
			case r.o.Status != StatusValid: // valid: only validated, after err
				out = append(out, r.o)
			}
		}
	}
	return out, err
}

// Campaign enqueues the rows of a campaign, Config.Concurrency at a time, and calls each (from
// one goroutine, the caller's, in completion order) with every recipient's Outcome. Invalid rows
// are rejected without stopping the rest. A Redis failure, a *ReadError from the reader or ctx
// ending stops the run with an error; the Summary then says exactly what was enqueued and what
// was not attempted, and every enqueued job has been reported to each.
func (p *Producer) Campaign(ctx context.Context, campaign string, rows iter.Seq[Row], opt Options, each func(Outcome)) (Summary, error) {
	if err := job.ValidCampaign(campaign); err != nil {
		return Summary{}, err
	}
	if each == nil {
		each = func(Outcome) {}
	}
	prio := store.Priority("")
	if opt.Priority != "" {
		pr, err := store.ParsePriority(opt.Priority)
		if err != nil {
			return Summary{}, err
		}
		prio = pr
	}
	if opt.DryRun {
		return p.dryRun(ctx, campaign, rows, opt.Defaults, each)
	}
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return Summary{}, fmt.Errorf("%w: %w", ErrRedisUnreachable, err)
	}
	if err := p.ledger.CheckEnqueue(ctx, campaign); err != nil {
		return Summary{}, err
	}
	if err := p.ledger.ScheduleCampaign(ctx, campaign, opt.SendAt); err != nil {
		return Summary{}, err
	}
	total := -1
	if opt.Strict {
		var checked Summary
		err := p.pass(ctx, campaign, prio, rows, opt.Defaults, true, nil, func(r result) error {
			checked.Add(r.o)
			if r.o.Status == StatusRejected {
				each(r.o)
			}
			return nil
		})
		// Nothing is enqueued yet: the valid recipients are not attempted.
		if s := (Summary{Rejected: checked.Rejected, NotAttempted: checked.Valid}); err != nil || s.Rejected > 0 {
			return s, err
		}
		total = checked.Valid
	}
	var s Summary
	err := p.pass(ctx, campaign, prio, rows, opt.Defaults, false, &s.NotAttempted, func(r result) error {
		s.Add(r.o)
		each(r.o)
		if r.o.Status == StatusRejected && total >= 0 {
			return fmt.Errorf("strict: line %d was valid when checked and is not now (did the file change?): %s", r.o.Line, r.o.Reason)
		}
		return nil
	})
	if total >= 0 && err != nil {
		// Strict knows every recipient from its first pass, including rows never reached.
		s.NotAttempted = total - s.Enqueued - s.Duplicates - s.Rejected
	}
	return s, err
}

// dryRun validates every row. A recipient repeated in the campaign is found by a set of TaskID
// hashes (8 bytes each, not the ids) so a dry run stays small for millions of rows.
func (p *Producer) dryRun(ctx context.Context, campaign string, rows iter.Seq[Row], defaults job.Fields, each func(Outcome)) (Summary, error) {
	var s Summary
	seed := maphash.MakeSeed()
	seen := map[uint64]struct{}{}
	err := p.pass(ctx, campaign, "", rows, defaults, true, &s.NotAttempted, func(r result) error {
		if r.o.Status == StatusValid {
			h := maphash.String(seed, r.o.TaskID)
			if _, dup := seen[h]; dup {
				r.o.Status = StatusDuplicate
			}
			seen[h] = struct{}{}
		}
		s.Add(r.o)
		each(r.o)
		return nil
	})
	return s, err
}

type work struct {
	index, line int
	to          string     // one recipient
	fields      job.Fields // defaults with the row's fields over them
	own         job.Fields // the row's fields alone, for a rejected Outcome
}

type result struct {
	o        Outcome
	err      error // the enqueue failed (not a rejection): fatal
	notTried bool  // nothing was sent to Redis for it, or the answer was an error
}

// pass reads rows once, fans recipients out to Concurrency workers (each takes up to
// enqueueBatch of them at a time) and hands every result to handle on this goroutine. It
// returns the first fatal error: from handle, a worker's Redis error, a *ReadError or ctx.
// notAttempted (when not nil) is increased for each recipient not tried; after a Redis error
// the rest of the rows are still read, cheaply, to count them.
func (p *Producer) pass(ctx context.Context, campaign string, prio store.Priority, rows iter.Seq[Row], defaults job.Fields,
	validate bool, notAttempted *int, handle func(result) error) error {
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	var skipped int
	n := p.cfg.Concurrency
	jobs := make(chan work, n*enqueueBatch)
	results := make(chan result, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ws := range batch.Of(jobs, enqueueBatch) {
				for _, r := range p.do(stop, campaign, prio, ws, validate) {
					results <- r
				}
			}
		})
	}
	var fatal error
	take := func(r result) {
		if r.notTried {
			skipped++
			if r.err != nil && fatal == nil {
				fatal = fmt.Errorf("enqueue line %d: %w", r.o.Line, r.err)
				cancel()
			}
			return
		}
		if err := handle(r); err != nil && fatal == nil {
			fatal = err
			cancel()
		}
	}
	submit := func(w work) bool {
		for fatal == nil {
			select {
			case jobs <- w:
				return true
			case r := <-results:
				take(r)
			case <-stop.Done():
				return false
			}
		}
		return false
	}
	index := 0
	for row := range rows {
		i := index
		index++
		var re *ReadError
		if row.Err != nil && errors.As(row.Err, &re) {
			if fatal == nil {
				fatal = row.Err
				cancel()
			}
			break
		}
		var tos []string
		if row.Err == nil {
			tos = job.Recipients(defaults.Over(row.Fields).To)
		}
		if fatal != nil || stop.Err() != nil {
			// A Redis failure leaves the file readable: count what is left so the summary adds
			// up. A cancelled ctx asks for a prompt stop, so it does not read on.
			if ctx.Err() != nil {
				break
			}
			skipped += max(1, len(tos))
			continue
		}
		if row.Err != nil || len(tos) == 0 {
			reason := "to is required: give at least one phone number"
			if row.Err != nil {
				reason = row.Err.Error()
			}
			take(result{o: Outcome{Index: i, Line: row.Line, Status: StatusRejected, Reason: reason, Fields: row.Fields}})
			continue
		}
		merged := defaults.Over(row.Fields)
		for k, to := range tos {
			if !submit(work{index: i, line: row.Line, to: to, fields: merged, own: row.Fields}) {
				skipped += len(tos) - k
				break
			}
		}
	}
	close(jobs)
	go func() { wg.Wait(); close(results) }()
	for r := range results {
		take(r)
	}
	if notAttempted != nil {
		*notAttempted += skipped
	}
	if fatal == nil && ctx.Err() != nil {
		fatal = ctx.Err()
	}
	return fatal
}

// do validates recipients and, unless validate is set, enqueues the valid ones with one Redis
// call per lane (per sender, for one campaign) and registers each lane after its tasks are
// written (prio empty keeps a registered lane's priority). It gives one result per work, in
// order. After stop none is tried; when an enqueue fails, the valid ones of its lane and of
// the lanes after it are not tried and the rejected ones are rejected all the same.
func (p *Producer) do(stop context.Context, campaign string, prio store.Priority, ws []work, validate bool) []result {
	rs := make([]result, len(ws))
	if stop.Err() != nil {
		for i, w := range ws {
			rs[i] = result{o: Outcome{Index: w.index, Line: w.line, To: w.to}, notTried: true}
		}
		return rs
	}
	type lane struct {
		sender string
		tasks  []store.Task
		valid  []int // indexes in rs of tasks
	}
	var lanes []*lane // a campaign's rows mostly share one sender: a slice beats a map
	for i, w := range ws {
		o := Outcome{Index: w.index, Line: w.line, To: w.to}
		f := w.fields
		f.To = w.to
		if strings.TrimSpace(f.From) == "" {
			f.From = p.from
		}
		var pl job.Payload
		var data []byte
		var err error
		if f.From == "" {
			// The sender is part of the TaskID: left to the worker's KALEYRA_FROM, the same row
			// would get another id (and be sent again) when the next run's sender differs.
			err = errNoSender
		} else if pl, err = job.New(campaign, f); err == nil {
			data, err = job.Encode(pl)
		}
		if err != nil {
			o.Status, o.Reason = StatusRejected, err.Error()
			o.Fields = w.own
			o.Fields.To = w.to
			rs[i] = result{o: o}
			continue
		}
		o.To, o.TaskID, o.Status = pl.To, job.TaskID(pl), StatusValid
		rs[i] = result{o: o}
		k := slices.IndexFunc(lanes, func(l *lane) bool { return l.sender == pl.From })
		if k < 0 {
			k = len(lanes)
			lanes = append(lanes, &lane{sender: pl.From})
		}
		lanes[k].tasks = append(lanes[k].tasks, store.Task{ID: o.TaskID, Payload: data})
		lanes[k].valid = append(lanes[k].valid, i)
	}
	if validate {
		return rs
	}
	// Not cancelled with stop: an enqueue once started is waited for, so what is reported as
	// enqueued is exactly what Redis holds.
	ctx := context.WithoutCancel(stop)
	err := p.skipSuppressed(ctx, campaign, rs, func(yield func(tasks *[]store.Task, valid *[]int) bool) {
		for _, ln := range lanes {
			if !yield(&ln.tasks, &ln.valid) {
				return
			}
		}
	})
	for _, ln := range lanes {
		var added []bool
		if err == nil && len(ln.tasks) > 0 {
			added, err = p.enqueue(ctx, campaign, ln.sender, prio, ln.tasks, true)
		}
		for k, i := range ln.valid {
			switch {
			case err != nil:
				rs[i].err, rs[i].notTried = err, true
			case added[k]:
				rs[i].o.Status = StatusEnqueued
			default:
				rs[i].o.Status = StatusDuplicate
			}
		}
	}
	return rs
}

// skipSuppressed looks the valid recipients of a batch up on the suppression list (one round
// trip), marks the listed ones suppressed, takes their tasks out of their lanes and counts them
// in the campaign.
func (p *Producer) skipSuppressed(ctx context.Context, campaign string, rs []result, lanes func(func(tasks *[]store.Task, valid *[]int) bool)) error {
	var numbers []string
	for tasks, valid := range lanes {
		for k := range *tasks {
			numbers = append(numbers, rs[(*valid)[k]].o.To)
		}
	}
	if len(numbers) == 0 {
		return nil
	}
	listed, err := p.ledger.Suppressed(ctx, numbers)
	if err != nil {
		return err
	}
	if !slices.Contains(listed, true) {
		return nil
	}
	var skipped []string
	n := 0
	for tasks, valid := range lanes {
		keep := 0
		for k := range *tasks {
			i := (*valid)[k]
			if listed[n] {
				rs[i].o.Status = StatusSuppressed
				skipped = append(skipped, rs[i].o.To)
			} else {
				(*tasks)[keep], (*valid)[keep] = (*tasks)[k], i
				keep++
			}
			n++
		}
		*tasks, *valid = (*tasks)[:keep], (*valid)[:keep]
	}
	return p.ledger.CountSuppressed(ctx, campaign, skipped)
}

// enqueue writes tasks of campaign from sender into their lane (counting the new ones when
// count is set) and announces them to the workers. The lane is registered live in its campaign
// first (once a minute per producer and lane), so the campaign's counts see its tasks even if
// this process dies midway; when the enqueue script finds the lane no longer live (a retirement
// came between), it is registered again.
func (p *Producer) enqueue(ctx context.Context, campaign, sender string, prio store.Priority, tasks []store.Task, count bool) ([]bool, error) {
	name := p.ledger.LaneName(campaign, sender)
	ln := store.Lane{Name: name, Campaign: campaign, Sender: sender, Priority: prio}
	declared := name + "\x00" + string(prio)
	if at, ok := p.declared.Load(declared); !ok || time.Since(at.(time.Time)) > time.Minute {
		// Registered live ahead of its tasks (one registration, where declaring and then
		// registering took two), and announced once they are in.
		if err := p.ledger.RegisterLaneAhead(ctx, ln, prio == ""); err != nil {
			return nil, err
		}
		p.declared.Store(declared, time.Now())
	}
	added, live, err := p.queue.Enqueue(ctx, name, tasks, count)
	if err != nil {
		return nil, err
	}
	if live {
		// Live already (DeclareLane above wrote a new priority): tell the workers it has work, in
		// case they found it empty and stopped taking from it. A lost message costs latency only.
		if slices.Contains(added, true) {
			p.ledger.Wake(ctx, name)
		}
		return added, nil
	}
	if err := p.ledger.RegisterLane(ctx, ln, prio == ""); err != nil {
		return nil, err
	}
	return added, nil
}

// Requeue puts a job that was already validated and enqueued once (a dead letter being
// redriven) back in its lane under its own TaskID, with a fresh retry budget. It does not
// count the job as new in the campaign's counters: it was counted when first enqueued. A job
// still held under its TaskID (queued, retrying, or completed within Retention) is a duplicate.
func (p *Producer) Requeue(ctx context.Context, pl job.Payload) (Status, error) {
	data, err := job.Encode(pl)
	if err != nil {
		return "", err
	}
	added, err := p.enqueue(ctx, pl.Campaign, pl.From, "", []store.Task{{ID: job.TaskID(pl), Payload: data}}, false)
	switch {
	case err != nil:
		return "", err
	case added[0]:
		return StatusEnqueued, nil
	}
	return StatusDuplicate, nil
}

// Counts reads the campaign's counts (one round trip per lane of the campaign). The campaign is
// finished when Completed + Dead == Enqueued.
func (p *Producer) Counts(ctx context.Context, campaign string) (job.Counts, error) {
	return p.ledger.Counts(ctx, campaign)
}
