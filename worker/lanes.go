package worker

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/store"
)

// supervisor is the lane upkeep around the dispatcher (dispatch.go): it starts scheduled
// campaigns, and one worker at a time (a Redis lock) retires drained lanes, removes lanes
// drained longer than the retention, revives lanes a producer wrote but did not register and
// sweeps the live lanes (expired completed tasks, missed wake-ups, missing due entries).
type supervisor struct {
	log       *zap.Logger
	ledger    *store.Ledger
	insp      *asynq.Inspector
	liveLanes func() []store.Lane
	// reconcile records the dead letters of tasks asynq archived in lanes outside the handler.
	reconcile func(ctx context.Context, lanes []string)
	// sweepEvery is how often the live lanes are swept (Config.ReconcileInterval).
	sweepEvery time.Duration
	sweeps     int
}

// startDue starts the scheduled campaigns whose time has come (their lanes are announced).
func (s *supervisor) startDue(ctx context.Context) {
	started, err := s.ledger.StartDue(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("start scheduled campaigns", zap.Error(err))
	}
	for _, c := range started {
		s.log.Info("scheduled campaign started", zap.String("campaign", c))
	}
}

// janitorEvery: expired completed tasks are deleted every janitorEvery-th sweep. A sweep costs
// one script per live lane (about seven commands inside), most of the idle cost of a lane that
// has nothing due.
const janitorEvery = 10

// laneCheck is when a live lane is next looked at for retirement, the gap after that, and
// since when it has been found empty.
type laneCheck struct {
	next       time.Time
	gap        time.Duration
	emptySince time.Time
}

// maxCheckGap bounds how long a live lane that still holds work goes unchecked: a lane that
// had work at its last check is looked at after twice the previous gap (from the maintenance
// interval up to this), so lanes waiting on far-off scheduled tasks or retries cost little; the
// sweep, which reads every live lane anyway, pushes the check of a lane with work this far out.
const maxCheckGap = 2 * time.Minute

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
	lastSweep := time.Now()
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
		if time.Since(lastSweep) >= s.sweepEvery {
			lastSweep = time.Now()
			s.sweep(ctx, checks)
		}
		if n, err := s.ledger.CleanUp(ctx, s.insp, 100); err != nil && ctx.Err() == nil {
			s.log.Warn("clean up lanes", zap.Error(err))
		} else if n > 0 {
			s.log.Info("removed lanes drained longer than the retention", zap.Int("lanes", n))
		}
	}
}

// sweep passes over the live lanes in batches (store.Ledger.Sweep). Lanes with pending tasks are
// announced again, for workers that missed their message; lanes with a backlog need no
// retirement check before the next sweep, lanes without one get theirs at once; lanes with
// new archives go to the reconciler.
func (s *supervisor) sweep(ctx context.Context, checks map[string]*laneCheck) {
	s.sweeps++
	lanes := s.liveLanes()
	now := time.Now()
	for i := 0; i < len(lanes); i += 500 {
		names := make([]string, 0, 500)
		for _, ln := range lanes[i:min(i+500, len(lanes))] {
			names = append(names, ln.Name)
		}
		swept, err := s.ledger.Sweep(ctx, names, s.sweeps%janitorEvery == 0)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("sweep lanes", zap.Error(err))
			}
			return
		}
		var pending, archived []string
		for _, sw := range swept {
			if sw.Pending > 0 {
				pending = append(pending, sw.Lane)
			}
			if sw.Archived {
				archived = append(archived, sw.Lane)
			}
			if c := checks[sw.Lane]; c != nil {
				if sw.Backlog() {
					c.emptySince, c.next = time.Time{}, now.Add(maxCheckGap)
				} else if c.emptySince.IsZero() {
					c.next = now
				}
			}
		}
		s.ledger.Wake(ctx, pending...)
		if len(archived) > 0 && s.reconcile != nil {
			s.reconcile(ctx, archived)
		}
	}
}
