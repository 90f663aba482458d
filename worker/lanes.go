package worker

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/store"
)

// A worker serves lanes (see package store): one asynq server per sender, serving that sender's
// live lanes with weights from their campaigns' priorities, plus one server for the single queue
// named after the namespace. A job waiting for its sender's rate holds a slot of its own sender's
// server only, so senders never wait for each other; within a sender, asynq's weighted random
// choice of the queue to dequeue from gives each campaign its share of the rate.
//
// asynq fixes a server's queues when it starts, so when a sender's lane set changes the
// supervisor starts a server with the new set and then shuts the old one down: it takes no
// new job, and the ones it holds finish (rate-limit waits included).
// New lanes are taken at once; servers are not restarted only to drop drained lanes more often
// than every dropEvery, since a drained lane costs just a poll.

// Priority weights. A high lane's weight is set so that the high lanes of a sender together
// have highShare of the weight (and so of the dequeues) whatever the other lanes are.
const (
	weightNormal = 2
	weightLow    = 1
	highShare    = 0.9
	dropEvery    = 5 * time.Second
)

// weights are the asynq queue weights of one sender's lanes.
func weights(lanes []store.Lane) map[string]int {
	w := make(map[string]int, len(lanes))
	other, high := 0, 0
	for _, ln := range lanes {
		switch ln.Priority {
		case store.PriorityHigh:
			high++
		case store.PriorityLow:
			w[ln.Name] = weightLow
			other += weightLow
		default:
			w[ln.Name] = weightNormal
			other += weightNormal
		}
	}
	hw := 1
	if high > 0 && other > 0 {
		hw = int(math.Ceil(highShare / (1 - highShare) * float64(other) / float64(high)))
	}
	for _, ln := range lanes {
		if ln.Priority == store.PriorityHigh {
			w[ln.Name] = hw
		}
	}
	return w
}

// laneServer is one running asynq server.
type laneServer struct {
	srv     *asynq.Server
	queues  map[string]int
	stop    context.CancelFunc // cancels its handler's stopping context
	started time.Time
}

// supervisor keeps one asynq server per sender in step with the live lanes.
type supervisor struct {
	cfg      Config
	log      *zap.Logger
	ledger   *store.Ledger
	rdb      redis.UniversalClient
	insp     *asynq.Inspector
	handler  func(stopping context.Context) *handler
	servers  map[string]*laneServer // by sender part; legacyKey for the single queue
	closing  sync.WaitGroup         // servers shutting down
	mu       sync.Mutex
	lanes    []store.Lane         // as last read
	draining map[*laneServer]bool // servers shutting down after a restart, their jobs finishing
}

const legacyKey = ""

// start runs a server on queues; the caller holds nothing.
func (s *supervisor) start(queues map[string]int) (*laneServer, error) {
	stopping, stop := context.WithCancel(context.Background())
	poll := s.cfg.PollInterval
	fwd := min(max(s.cfg.RetryBase/4, 100*time.Millisecond), time.Second)
	janitor := 8 * time.Second // asynq's default
	if n := time.Duration(len(queues)); n > 1 {
		// An idle server polls each of its queues once per TaskCheckInterval, forwards due
		// retries and scheduled tasks of each (two calls) once per DelayedTaskCheckInterval and
		// deletes expired completed tasks of each once per JanitorInterval: with many lanes,
		// do each less often, so an idle lane costs about one Redis call a second, most of it
		// the poll. The price: with many lanes a retry may come up to 10 s after its time.
		poll = min(max(poll, n*poll), time.Second)
		fwd = min(max(fwd, n*250*time.Millisecond), 10*time.Second)
		janitor = min(max(janitor, n*200*time.Millisecond), time.Minute)
	}
	srv := asynq.NewServerFromRedisClient(s.rdb, asynq.Config{
		Concurrency:     s.cfg.Concurrency,
		Queues:          queues,
		RetryDelayFunc:  backoff(s.cfg.RetryBase, s.cfg.RetryMax),
		IsFailure:       isFailure,
		ShutdownTimeout: s.cfg.ShutdownTimeout,
		// Retries become due at their backoff; the forwarder moves them back to the queue only
		// when it checks, so it checks often enough not to add more than a fraction of the base.
		DelayedTaskCheckInterval: fwd,
		TaskCheckInterval:        poll,
		JanitorInterval:          janitor,
		Logger:                   asynqLogger{s.log.Sugar().With("component", "asynq"), s.cfg.pii()},
		LogLevel:                 asynq.WarnLevel,
	})
	if err := srv.Start(s.handler(stopping)); err != nil {
		stop()
		return nil, err
	}
	return &laneServer{srv: srv, queues: queues, stop: stop, started: time.Now()}, nil
}

// retire shuts ls down in the background. On a restart (now false) its jobs finish as they
// would have, rate-limit waits included: the new server is already taking the next ones, and
// sending a waiting job back to its lane would only delay it (through asynq's retry set). When
// the worker stops (now true), rate-limit waits end at once and their jobs go back to the lane.
func (s *supervisor) retire(ls *laneServer, now bool) {
	if now {
		ls.stop()
	} else {
		s.mu.Lock()
		s.draining[ls] = true
		s.mu.Unlock()
	}
	s.closing.Go(func() {
		ls.srv.Shutdown()
		ls.stop()
		s.mu.Lock()
		delete(s.draining, ls)
		s.mu.Unlock()
	})
}

// sync starts the scheduled campaigns whose time has come, reads the live lanes and brings the
// servers in step with them.
func (s *supervisor) sync(ctx context.Context) error {
	started, err := s.ledger.StartDue(ctx)
	if err != nil {
		return err
	}
	for _, c := range started {
		s.log.Info("scheduled campaign started", zap.String("campaign", c))
	}
	lanes, err := s.ledger.LiveLanes(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.lanes = lanes
	s.mu.Unlock()
	bySender := map[string][]store.Lane{}
	for _, ln := range lanes {
		bySender[ln.Sender] = append(bySender[ln.Sender], ln)
	}
	for sender, ls := range bySender {
		want := weights(ls)
		cur := s.servers[sender]
		if cur != nil && maps.Equal(cur.queues, want) {
			continue
		}
		if cur != nil && !grows(cur.queues, want) && time.Since(cur.started) < dropEvery {
			continue // only drained lanes to drop: not worth a restart yet
		}
		next, err := s.start(want)
		if err != nil {
			return err
		}
		s.log.Info("serving lanes", zap.String("sender", s.cfg.pii().Phone(sender)), zap.Strings("lanes", slices.Sorted(maps.Keys(want))))
		s.servers[sender] = next
		if cur != nil {
			s.retire(cur, false)
		}
	}
	for sender, cur := range s.servers {
		if _, ok := bySender[sender]; !ok && sender != legacyKey && time.Since(cur.started) >= dropEvery {
			delete(s.servers, sender)
			s.retire(cur, false)
		}
	}
	return nil
}

// grows reports whether want has a queue cur lacks, or a new weight.
func grows(cur, want map[string]int) bool {
	for q, w := range want {
		if cur[q] != w {
			return true
		}
	}
	return false
}

// liveLanes returns the lanes as last read.
func (s *supervisor) liveLanes() []store.Lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lanes
}

// run serves the single queue and the lanes until ctx ends, then shuts every server down and
// waits for them.
func (s *supervisor) run(ctx context.Context, interval time.Duration) error {
	legacy, err := s.start(map[string]int{s.ledger.Namespace(): 1})
	if err != nil {
		return err
	}
	s.servers = map[string]*laneServer{legacyKey: legacy}
	s.draining = map[*laneServer]bool{}
	if err := s.sync(ctx); err != nil {
		s.log.Warn("read lanes", zap.Error(err))
	}
	go s.maintain(ctx, 5*interval)
	// A producer announces a lane that becomes live: read the lanes at once then, so its first
	// jobs do not wait for the next tick (which stays, for announcements lost with a
	// connection).
	sub := s.ledger.SubscribeLanes(ctx)
	defer sub.Close()
	news := sub.Channel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-news:
			if err := s.sync(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("read lanes", zap.Error(err))
			}
		case <-ctx.Done():
			for _, ls := range s.servers {
				s.retire(ls, true)
			}
			s.mu.Lock()
			for ls := range s.draining {
				ls.stop() // the worker stops: their rate-limit waits end now too
			}
			s.mu.Unlock()
			s.closing.Wait()
			return nil
		case <-t.C:
			if err := s.sync(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("read lanes", zap.Error(err))
			}
		}
	}
}

// laneCheck is when a live lane is next looked at for retirement, the gap after that, and
// since when it has been found empty.
type laneCheck struct {
	next       time.Time
	gap        time.Duration
	emptySince time.Time
}

// maxCheckGap bounds how long a live lane that still holds work goes unchecked: a lane that
// had work at its last check is looked at after twice the previous gap (from the maintenance
// interval up to this), so lanes waiting on far-off scheduled tasks or retries cost little.
const maxCheckGap = 30 * time.Second

// retireDrained retires the live lanes that are due for a check and have been found empty at
// two checks at least idle apart. A lane that is empty only between bursts of a steady trickle
// (single messages sent now and then) stays live: retiring it would make the next message wait
// for the workers to find the lane again and restart its sender's server.
func (s *supervisor) retireDrained(ctx context.Context, every, idle time.Duration, checks map[string]*laneCheck) error {
	now := time.Now()
	live := s.liveLanes()
	seen := make(map[string]bool, len(live))
	var due []store.Lane
	for _, ln := range live {
		seen[ln.Name] = true
		c := checks[ln.Name]
		if c == nil {
			c = &laneCheck{gap: every}
			checks[ln.Name] = c
		}
		if !now.Before(c.next) {
			due = append(due, ln)
		}
	}
	for name := range checks {
		if !seen[name] {
			delete(checks, name) // retired, or another worker retired it
		}
	}
	var drained []store.Lane
	for _, ln := range due {
		c := checks[ln.Name]
		n, err := s.ledger.Backlog(ctx, ln.Name)
		if err != nil {
			return err
		}
		switch {
		case n > 0:
			c.emptySince = time.Time{}
			c.next = now.Add(c.gap)
			c.gap = min(2*c.gap, maxCheckGap)
		case c.emptySince.IsZero():
			c.emptySince, c.gap, c.next = now, every, now.Add(idle)
		case now.Sub(c.emptySince) >= idle:
			drained = append(drained, ln)
		}
	}
	retired, err := s.ledger.RetireDrained(ctx, drained)
	for _, name := range retired {
		delete(checks, name)
	}
	return err
}

// maintain retires drained lanes and removes lanes drained longer than the retention, every
// `every` (5 lane intervals: 5 s by default). One worker at a time does it (a Redis lock), so
// pods add no load as they scale.
func (s *supervisor) maintain(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	checks := map[string]*laneCheck{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := s.ledger.Lock(ctx, "lanes:lock", every*9/10)
		if err != nil || !ok {
			continue
		}
		if n, err := s.ledger.ReviveOrphans(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("revive lanes", zap.Error(err))
		} else if len(n) > 0 {
			s.log.Info("serving lanes a producer wrote but did not register", zap.Strings("lanes", n))
		}
		if err := s.retireDrained(ctx, every, 2*every, checks); err != nil && ctx.Err() == nil {
			s.log.Warn("retire drained lanes", zap.Error(err))
		}
		if n, err := s.ledger.CleanUp(ctx, s.insp, 100); err != nil && ctx.Err() == nil {
			s.log.Warn("clean up lanes", zap.Error(err))
		} else if n > 0 {
			s.log.Info("removed lanes drained longer than the retention", zap.Int("lanes", n))
		}
	}
}
