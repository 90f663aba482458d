package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wabulk/wabulk/internal/store"
)

// ErrUnknownQueue is returned by Pause and Resume for a queue that is neither the namespace
// nor a queue asynq knows on this Redis: a typo must not report "paused" while the real queue
// keeps sending.
var ErrUnknownQueue = errors.New("unknown queue")

// Pause stops workers from taking jobs of queue; empty or the namespace (WABULK_QUEUE) means
// every lane of it, and the lanes registered while it is paused. Jobs already running finish; the rest wait in Redis
// until Resume. Pausing a paused queue is no error; a queue asynq does not know is
// ErrUnknownQueue.
func (o *Ops) Pause(queue string) error { return o.setPaused(queue, true) }

// Resume lets workers take jobs of queue (empty or the namespace: all of its queues) again, e.g.
// after a pause on WABULK_PAUSE_ON's E110 and a balance top-up. Resuming a running queue is no
// error; a queue asynq does not know is ErrUnknownQueue.
func (o *Ops) Resume(queue string) error { return o.setPaused(queue, false) }

func (o *Ops) setPaused(queue string, pause bool) error {
	ctx := context.Background()
	if queue != "" && queue != o.cfg.Queue {
		q, err := o.QueueCounts(queue)
		if err != nil {
			return err
		}
		if !q.Exists {
			return fmt.Errorf("%w %q: neither %s (every lane) nor a queue on this Redis (wabulk queue ls --all lists them)",
				ErrUnknownQueue, queue, o.cfg.Queue)
		}
		return o.setOnePaused(q, pause)
	}
	// The namespace's own flag (asynq's paused flag of a queue named after it) pauses the lanes
	// registered while it is set (store.Ledger.RegisterLane) and holds the workers' dispatch.
	if err := store.SetPaused(o.insp, o.cfg.Queue, pause); err != nil {
		verb := "resume"
		if pause {
			verb = "pause"
		}
		return fmt.Errorf("%s %s: %w", verb, o.cfg.Queue, err)
	}
	names, err := o.namespaceQueues(ctx)
	if err != nil {
		return err
	}
	qs, err := o.queueCounts(ctx, names)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if err := o.setOnePaused(q, pause); err != nil {
			return err
		}
	}
	return nil
}

// setOnePaused pauses or resumes one queue whose state was just read. A repeat is not an
// error, nor is losing the race to another pause or resume (a worker's WABULK_PAUSE_ON, a
// second operator).
func (o *Ops) setOnePaused(q QueueCounts, pause bool) error {
	if q.Exists && q.Paused == pause {
		return nil
	}
	if err := store.SetPaused(o.insp, q.Queue, pause); err != nil {
		verb := "resume"
		if pause {
			verb = "pause"
		}
		return fmt.Errorf("%s %s: %w", verb, q.Queue, err)
	}
	if !pause {
		// Workers set a paused lane aside until they hear it has work: tell them. A lost message
		// costs latency only (the upkeep's sweep announces lanes with pending work again).
		o.ledger.Wake(context.Background(), q.Queue)
	}
	return nil
}

// QueueList is what queue ls lists.
type QueueList struct {
	// Queues are the namespace's counts first, then each queue listed, sorted by name.
	Queues []QueueCounts
	// More is how many queues on this Redis are not listed.
	More int64
}

// Queues returns the counts of the namespace, summed over the queues listed, then of each queue
// listed: the lanes of the active campaigns and of the `finished` most recently finished ones,
// so its cost follows the active campaigns. With finished negative it lists every queue asynq
// knows on this Redis (other namespaces' too), the namespace summed over all of its own.
func (o *Ops) Queues(ctx context.Context, finished int) (QueueList, error) {
	var names []string
	total := int64(-1)
	if finished < 0 {
		all, err := o.ledger.QueueNames(ctx)
		if err != nil {
			return QueueList{}, fmt.Errorf("list queues: %w", err)
		}
		names = slices.DeleteFunc(all, func(n string) bool { return n == o.cfg.Queue })
	} else {
		ix, err := o.ledger.CampaignIndex(ctx, finished)
		if err != nil {
			return QueueList{}, err
		}
		lanes, err := o.ledger.LanesOf(ctx, append(ix.Active, ix.Finished...))
		if err != nil {
			return QueueList{}, err
		}
		for _, ls := range lanes {
			names = append(names, ls...)
		}
		if total, err = o.ledger.QueueCount(ctx); err != nil {
			return QueueList{}, fmt.Errorf("count queues: %w", err)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	qs, err := o.queueCounts(ctx, names)
	if err != nil {
		return QueueList{}, err
	}
	// The namespace's row sums the namespace's lanes listed.
	var own []QueueCounts
	for _, q := range qs {
		if strings.HasPrefix(q.Queue, o.cfg.Queue+":") {
			own = append(own, q)
		}
	}
	list := QueueList{Queues: append([]QueueCounts{sum(o.cfg.Queue, own)}, qs...)}
	if total >= 0 {
		listed := int64(0)
		for _, q := range qs {
			if q.Exists {
				listed++
			}
		}
		list.More = max(0, total-listed)
	}
	return list, nil
}
