package worker

// The dispatcher serves the lanes. Per sender it runs a few loops (takers), each of which takes a
// rate token from the shared limiter first, then picks the next lane with work by deficit
// round-robin, and only then takes one task from Redis (store.Ledger.Take) and starts its
// attempt. So a job leaves
// Redis only when its sender can send it now: a pause, a cancel, a suppression or a lowered
// rate decided before that moment holds for it, and a worker holds no job that waits on the
// limiter. At most Config.Concurrency attempts of one sender are in flight in one worker.
//
// Lanes with work: a worker learns of a lane when it is registered live (the producer's
// announcement), when a producer adds tasks to it, when retries fall due, when its campaign
// resumes (each a message on the lanes channel), and by reading the live lanes every
// 5 × LaneInterval. A lane found empty, paused or cancelled is set aside until its next
// message; it costs nothing in between. The upkeep's sweep re-announces lanes that have
// pending tasks, for messages lost with a connection.
//
// Fair share: deficit round-robin over the sender's lanes with work, in a fixed order. Each
// visit gives a lane its quantum (normal 1, low ½; the high lanes together get 9× the quantum
// of all the others, so 90 % of the sends) and it sends while it has a whole token. A lane that
// gets work is put at the head of the round, so a new campaign's first send does not wait for a
// big one's turn to end: with n lanes, every lane sends within n of its sender's sends.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// takers is how many dispatch loops a sender runs in one worker (at most its concurrency): each
// holds one rate token at a time and takes one task with it, so their round trips to Redis
// overlap when the rate does not bind, as asynq's processors' dequeues do.
const takers = 16

// Priority quanta of the round-robin; the high lanes' is computed (see quantum).
const (
	quantumNormal = 1.0
	quantumLow    = 0.5
	highShare     = 0.9
)

// laneState is one lane of a sender's round.
type laneState struct {
	lane    store.Lane
	deficit float64
	inRound bool
	// credited: the lane got its quantum for the visit the round is on (it may be interrupted
	// by a lane put at the head, and goes on after it without a second quantum).
	credited bool
	// wakes counts the announcements of work: a lane found empty is set aside only if none
	// came since the take that found it so.
	wakes uint64
}

// senderQueue is one sender's lanes and its dispatch loop.
type senderQueue struct {
	d     *dispatcher
	part  string // the sender part of its lanes' names
	from  string // the number the limiter and Kaleyra know
	slots chan struct{}

	mu    sync.Mutex
	lanes map[string]*laneState
	round []*laneState // the lanes with work, in round-robin order
	pos   int
	wake  chan struct{} // a lane got work
	// quanta of the lanes in the round: the normal and low ones together, and the high ones.
	others float64
	highs  int
}

func (q *senderQueue) quantum(ls *laneState) float64 {
	switch ls.lane.Priority {
	case store.PriorityHigh:
		return max(1, highShare/(1-highShare)*q.others/float64(max(q.highs, 1)))
	case store.PriorityLow:
		return quantumLow
	}
	return quantumNormal
}

func (q *senderQueue) weigh(ls *laneState, sign float64) {
	if ls.lane.Priority == store.PriorityHigh {
		q.highs += int(sign)
	} else {
		q.others += sign * q.quantum(ls)
	}
}

// ready puts the lane in the round at its head (it sends next). A lane already in the round
// keeps its place.
func (q *senderQueue) ready(ln store.Lane) {
	q.mu.Lock()
	ls := q.lanes[ln.Name]
	if ls == nil {
		ls = &laneState{lane: ln}
		q.lanes[ln.Name] = ls
	}
	if ls.lane.Priority != ln.Priority && ln.Priority != "" {
		if ls.inRound {
			q.weigh(ls, -1)
			ls.lane.Priority = ln.Priority
			q.weigh(ls, 1)
		} else {
			ls.lane.Priority = ln.Priority
		}
	}
	ls.wakes++
	if !ls.inRound {
		ls.inRound = true
		q.weigh(ls, 1)
		ls.deficit, ls.credited = 0, false
		q.round = append(q.round, nil)
		copy(q.round[q.pos+1:], q.round[q.pos:])
		q.round[q.pos] = ls
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// setAside takes a lane out of the round until it gets work again.
func (q *senderQueue) setAside(ls *laneState) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.remove(ls)
}

// setAsideUnlessWoken is setAside unless the lane was announced since wakes was read.
func (q *senderQueue) setAsideUnlessWoken(ls *laneState, wakes uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ls.wakes == wakes {
		q.remove(ls)
	}
}

// wakesOf reads a lane's announcement count.
func (q *senderQueue) wakesOf(ls *laneState) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return ls.wakes
}

// remove is setAside with q.mu held.
func (q *senderQueue) remove(ls *laneState) {
	if !ls.inRound {
		return
	}
	for i, x := range q.round {
		if x == ls {
			q.round = append(q.round[:i], q.round[i+1:]...)
			if i < q.pos {
				q.pos--
			}
			break
		}
	}
	if q.pos >= len(q.round) {
		q.pos = 0
	}
	ls.inRound = false
	ls.deficit, ls.credited = 0, false
	q.weigh(ls, -1)
}

// forget drops a lane that is no longer live.
func (q *senderQueue) forget(name string) {
	q.mu.Lock()
	ls := q.lanes[name]
	q.mu.Unlock()
	if ls != nil {
		q.setAside(ls)
		q.mu.Lock()
		delete(q.lanes, name)
		q.mu.Unlock()
	}
}

// next is the lane whose turn it is, nil when no lane has work.
func (q *senderQueue) next() *laneState {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.round) == 0 {
		return nil
	}
	for {
		ls := q.round[q.pos]
		if !ls.credited {
			ls.deficit += q.quantum(ls)
			ls.credited = true
		}
		if ls.deficit >= 1 {
			ls.deficit--
			return ls
		}
		ls.credited = false
		q.pos = (q.pos + 1) % len(q.round)
	}
}

func (q *senderQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.round) == 0
}

// run is the sender's dispatch loop: a free slot, a lane with work, a rate token, a task.
func (q *senderQueue) run(ctx context.Context) {
	d := q.d
	for {
		select {
		case q.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !q.await(ctx) {
			return
		}
		if q.from != "" {
			// The token first: the job is taken only when its sender may send it now.
			waited, err := d.limiter.Wait(ctx, q.from)
			d.h.metrics.wait.WithLabelValues(d.h.metrics.sender(q.from)).Observe(waited.Seconds())
			if err != nil {
				<-q.slots
				if ctx.Err() != nil {
					return
				}
				d.log.Warn("rate limiter", zap.String("sender", d.h.pii.Phone(q.from)), zap.Error(err))
				sleep(ctx, 200*time.Millisecond)
				continue
			}
		}
		if !q.takeOne(ctx) {
			<-q.slots // no lane had work after all: the token goes unused
		}
	}
}

// await waits until the namespace is not paused and some lane has work.
func (q *senderQueue) await(ctx context.Context) bool {
	for {
		if !q.d.paused.Load() && !q.empty() {
			return true
		}
		select {
		case <-q.wake:
		case <-time.After(q.d.pauseEvery):
		case <-ctx.Done():
			return false
		}
	}
}

// takeOne takes a task from the next lane with work and starts its attempt; lanes found
// without work are set aside. It reports whether it started one.
func (q *senderQueue) takeOne(ctx context.Context) bool {
	d := q.d
	for {
		ls := q.next()
		if ls == nil {
			return false
		}
		wakes := q.wakesOf(ls)
		// Not cut short by the stop: a take that reached Redis must come back, or its task would
		// sit in active until its lease ran out.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		index, at := d.indexDue(ls.lane.Name), time.Now()
		outcome, t, err := d.ledger.Take(tctx, ls.lane.Name, index)
		cancel()
		if index && err == nil && outcome == store.TakeTaken {
			d.indexedNow(ls.lane.Name, at)
		}
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("take a job", zap.String("lane", ls.lane.Name), zap.Error(err))
				sleep(ctx, 200*time.Millisecond)
			}
			return false
		}
		if outcome != store.TakeTaken {
			q.setAsideUnlessWoken(ls, wakes)
			continue
		}
		if t.Left == 0 {
			// That was its last task: no need for an empty take to find out.
			q.setAsideUnlessWoken(ls, wakes)
		}
		d.hold(t)
		d.jobs.Go(func() {
			defer func() { <-q.slots }()
			d.attempt(t)
		})
		return true
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// dispatcher runs every sender's loops of one worker and the work around them: lane discovery,
// lease extension, forwarding due retries and recovering tasks of dead workers.
type dispatcher struct {
	cfg     Config
	log     *zap.Logger
	ledger  *store.Ledger
	h       *handler
	limiter rateLimiter
	retry   asynq.RetryDelayFunc

	paused     atomic.Bool   // the namespace is paused (`wabulk queue pause`)
	pauseEvery time.Duration // how often paused is read

	mu      sync.Mutex
	senders map[string]*senderQueue
	known   map[string]store.Lane // live lanes as last read
	held    map[string]map[string]bool
	indexed map[string]time.Time // when this worker last recorded a lane in the lease index

	run        context.Context // the loops; ends at the stop
	cancelRun  context.CancelFunc
	jobsCtx    context.Context // the attempts; ends ShutdownTimeout after the stop
	cancelJobs context.CancelFunc
	jobs       sync.WaitGroup
	loops      sync.WaitGroup
}

func newDispatcher(cfg Config, log *zap.Logger, h *handler, limiter rateLimiter) *dispatcher {
	d := &dispatcher{cfg: cfg, log: log, ledger: h.ledger, h: h, limiter: limiter,
		retry: backoff(cfg.RetryBase, cfg.RetryMax), pauseEvery: 250 * time.Millisecond,
		senders: map[string]*senderQueue{}, known: map[string]store.Lane{}, held: map[string]map[string]bool{},
		indexed: map[string]time.Time{}}
	d.run, d.cancelRun = context.WithCancel(context.Background())
	d.jobsCtx, d.cancelJobs = context.WithCancel(context.Background())
	return d
}

// liveLanes returns the live lanes as last read.
func (d *dispatcher) liveLanes() []store.Lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]store.Lane, 0, len(d.known))
	for _, ln := range d.known {
		out = append(out, ln)
	}
	return out
}

// queue returns the sender's queue, starting its loop on first use.
func (d *dispatcher) queue(part string) *senderQueue {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.senders[part]
	if q == nil {
		from := "+" + part
		if part == store.DefaultSender {
			from = d.cfg.From
		}
		q = &senderQueue{d: d, part: part, from: from, slots: make(chan struct{}, d.cfg.Concurrency),
			lanes: map[string]*laneState{}, wake: make(chan struct{}, 1)}
		d.senders[part] = q
		for range min(d.cfg.Concurrency, takers) {
			d.loops.Go(func() { q.run(d.run) })
		}
	}
	return q
}

// setLanes brings the known lanes in step with the live ones just read: new ones are tried at
// once, lanes no longer live (retired, or held by a pause or a schedule) are dropped.
func (d *dispatcher) setLanes(lanes []store.Lane) {
	seen := make(map[string]store.Lane, len(lanes))
	var added []store.Lane
	d.mu.Lock()
	for _, ln := range lanes {
		seen[ln.Name] = ln
		if old, ok := d.known[ln.Name]; !ok || old.Priority != ln.Priority {
			added = append(added, ln)
		}
	}
	var gone []store.Lane
	for name, ln := range d.known {
		if _, ok := seen[name]; !ok {
			gone = append(gone, ln)
		}
	}
	d.known = seen
	d.mu.Unlock()
	for _, ln := range gone {
		d.queue(ln.Sender).forget(ln.Name)
	}
	for _, ln := range added {
		d.queue(ln.Sender).ready(ln)
	}
}

// woken handles a lane's announcement: it has work. A lane just registered comes with its
// priority; another unknown one is looked up.
func (d *dispatcher) woken(ctx context.Context, msg string) {
	name, prio := store.ParseAnnouncement(msg)
	d.mu.Lock()
	ln, ok := d.known[name]
	d.mu.Unlock()
	if !ok || (prio != "" && prio != ln.Priority) {
		if lane, parsed := store.LaneFromName(name, prio); parsed {
			ln, ok = lane, true
		} else {
			var err error
			ln, ok, err = d.ledger.LaneInfo(ctx, name)
			if err != nil || !ok {
				return
			}
		}
		d.mu.Lock()
		d.known[name] = ln
		d.mu.Unlock()
	}
	d.queue(ln.Sender).ready(ln)
}

// indexDue reports whether a take from lane must record it in the lease index: not when this
// worker did less than store.IndexEvery ago.
func (d *dispatcher) indexDue(lane string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.indexed[lane]
	return !ok || time.Since(at) >= store.IndexEvery
}

// indexedNow records that a take just recorded lane in the lease index.
func (d *dispatcher) indexedNow(lane string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.indexed) > 10000 {
		clear(d.indexed)
	}
	d.indexed[lane] = at
}

// hold records a taken task, for its lease's extension.
func (d *dispatcher) hold(t *store.Taken) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.held[t.Lane]
	if m == nil {
		m = map[string]bool{}
		d.held[t.Lane] = m
	}
	m[t.ID] = true
}

func (d *dispatcher) release(t *store.Taken) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.held[t.Lane], t.ID)
	if len(d.held[t.Lane]) == 0 {
		delete(d.held, t.Lane)
	}
}

// attempt runs one taken task and moves it on as asynq's processor would.
func (d *dispatcher) attempt(t *store.Taken) {
	defer d.release(t)
	err := d.h.process(d.jobsCtx, t)
	d.finish(t, err)
}

// finish moves a task on after its attempt: completed, dropped (suppressed), archived (dead
// letter), requeued (the worker is stopping) or retried with backoff. Redis may be away for a
// moment: each move is tried until the task's lease would end, after which the upkeep of any
// worker takes the task back (a sent one is then completed without a second send, by its
// marker).
func (d *dispatcher) finish(t *store.Taken, err error) {
	var sup *suppressed
	move := func(ctx context.Context) error {
		switch {
		case err == nil:
			return d.ledger.CompleteTask(ctx, t)
		case errors.As(err, &sup):
			return d.ledger.DropSuppressed(ctx, t, sup.campaign, sup.to)
		case d.jobsCtx.Err() != nil && !errors.Is(err, asynq.SkipRetry):
			// The shutdown timeout ended the attempt: back to the lane, unattempted, as asynq does.
			return d.ledger.RequeueTask(ctx, t)
		case errors.Is(err, asynq.SkipRetry) || t.Retried >= t.Retry:
			return d.ledger.ArchiveTask(ctx, t, err.Error())
		default:
			at := time.Now().Add(d.retry(t.Retried, err, nil))
			return d.ledger.RetryTask(ctx, t, at, err.Error(), isFailure(err))
		}
	}
	giveUp := time.Now().Add(store.LeaseDuration - 5*time.Second)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		merr := move(ctx)
		cancel()
		if merr == nil {
			return
		}
		if time.Now().After(giveUp) {
			d.log.Warn("task not moved on; the upkeep takes it back when its lease ends",
				zap.String("task_id", d.h.pii.TaskID(t.ID)), zap.Error(merr))
			return
		}
		time.Sleep(min(time.Duration(100<<min(i, 4))*time.Millisecond, time.Second))
	}
}

// extendLeases keeps the leases of the tasks this worker holds.
func (d *dispatcher) extendLeases(ctx context.Context) {
	d.mu.Lock()
	held := make(map[string][]string, len(d.held))
	for lane, ids := range d.held {
		for id := range ids {
			held[lane] = append(held[lane], id)
		}
	}
	d.mu.Unlock()
	if err := d.ledger.ExtendLeases(ctx, held); err != nil && ctx.Err() == nil {
		d.log.Warn("extend leases", zap.Error(err))
	}
}

// recover gives the tasks whose lease ended (their worker died) back to their lanes: a retry,
// or the archive when their budget is spent, as asynq's recoverer does.
func (d *dispatcher) recover(ctx context.Context) {
	// asynq's grace: a lease is trusted dead only 30 s after it ended, for clocks that differ.
	expired, err := d.ledger.Expired(ctx, store.LeaseDuration)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("recover expired leases", zap.Error(err))
		}
		return
	}
	for _, t := range expired {
		var merr error
		if t.Retried >= t.Retry {
			// Its last attempt: a dead letter, recorded before the archive as the handler does.
			merr = d.ledger.Dead(ctx, t.Lane, interrupted(t))
			if merr == nil {
				merr = d.ledger.ArchiveTask(ctx, t, store.ErrLeaseExpired.Error())
			}
		} else {
			merr = d.ledger.RetryTask(ctx, t, time.Now().Add(d.retry(t.Retried, store.ErrLeaseExpired, nil)), store.ErrLeaseExpired.Error(), true)
		}
		if merr != nil && ctx.Err() == nil {
			d.log.Warn("recover a task", zap.String("task_id", d.h.pii.TaskID(t.ID)), zap.Error(merr))
		}
	}
	if len(expired) > 0 {
		d.log.Info("took back tasks whose worker stopped answering", zap.Int("tasks", len(expired)))
	}
}

// interrupted is the dead letter of a task whose worker died during its last attempt: Kaleyra
// may or may not have received it.
func interrupted(t *store.Taken) store.DeadLetter {
	d := store.DeadLetter{TaskID: t.ID, Code: CodeInterrupted, Message: store.ErrLeaseExpired.Error(),
		Attempt: t.Retried + 1, Time: time.Now().UTC()}
	if p, err := job.Decode(t.Payload); err == nil {
		d.Payload = p
	} else {
		d.Raw = clipBytes(t.Payload, 4096)
	}
	return d
}

// forward moves due retries to their lanes and announces those lanes.
func (d *dispatcher) forward(ctx context.Context) {
	woken, err := d.ledger.ForwardDue(ctx)
	if err != nil && ctx.Err() == nil {
		d.log.Warn("forward due retries", zap.Error(err))
	}
	if len(woken) > 0 {
		d.ledger.Wake(ctx, woken...)
	}
}

// readPaused refreshes the namespace's paused flag.
func (d *dispatcher) readPaused(ctx context.Context) {
	p, err := d.ledger.NamespacePaused(ctx)
	if err != nil {
		return // keep the last value; the takes fail on their own while Redis is away
	}
	if d.paused.Swap(p) && !p {
		// Resumed: every live lane may have work again (their takes found them paused).
		for _, ln := range d.liveLanes() {
			d.queue(ln.Sender).ready(ln)
		}
	}
}

// every runs fn every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// serve runs the dispatcher until ctx ends; then it takes no new task, lets the attempts in
// flight finish for up to ShutdownTimeout, ends the rest (their tasks go back to their lanes)
// and returns.
func (d *dispatcher) serve(ctx context.Context) {
	go func() { <-ctx.Done(); d.cancelRun() }()
	run := d.run
	d.readPaused(run)
	if lanes, err := d.ledger.LiveLanes(run); err == nil {
		d.setLanes(lanes)
	} else {
		d.log.Warn("read lanes", zap.Error(err))
	}
	var bg sync.WaitGroup
	sub := d.ledger.SubscribeLanes(run)
	bg.Go(func() {
		ch := sub.Channel()
		for {
			select {
			case m, ok := <-ch:
				if !ok {
					return
				}
				d.woken(run, m.Payload)
			case <-run.Done():
				return
			}
		}
	})
	bg.Go(func() {
		every(run, 5*d.cfg.LaneInterval, func(ctx context.Context) {
			if lanes, err := d.ledger.LiveLanes(ctx); err == nil {
				d.setLanes(lanes)
			} else if ctx.Err() == nil {
				d.log.Warn("read lanes", zap.Error(err))
			}
		})
	})
	bg.Go(func() { every(run, d.pauseEvery, d.readPaused) })
	bg.Go(func() { every(run, min(max(d.cfg.RetryBase/4, 100*time.Millisecond), 500*time.Millisecond), d.forward) })
	bg.Go(func() { every(run, 5*time.Second, d.recover) })
	// Leases are extended from the jobs' context: they must outlive the loops until the last
	// attempt is moved on.
	leases, stopLeases := context.WithCancel(context.Background())
	var lease sync.WaitGroup
	lease.Go(func() { every(leases, store.LeaseDuration/6, d.extendLeases) })

	<-run.Done()
	sub.Close()
	bg.Wait()
	d.loops.Wait()
	done := make(chan struct{})
	go func() { d.jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownTimeout):
		d.cancelJobs()
		<-done
	}
	d.cancelJobs()
	stopLeases()
	lease.Wait()
}
