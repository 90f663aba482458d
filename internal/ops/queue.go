package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/wabulk/wabulk/internal/store"
)

// ErrUnknownQueue is returned by Pause and Resume for a queue that is neither the namespace
// nor a queue asynq knows on this Redis: a typo must not report "paused" while the real queue
// keeps sending.
var ErrUnknownQueue = errors.New("unknown queue")

// Pause stops workers from taking jobs of queue; empty or the namespace (WABULK_QUEUE) means
// the single queue and every lane of it. Jobs already running finish; the rest wait in Redis
// until Resume. Pausing a paused queue is no error; a queue asynq does not know is
// ErrUnknownQueue.
func (o *Ops) Pause(queue string) error { return o.setPaused(queue, true) }

// Resume lets workers take jobs of queue (empty or the namespace: all of its queues) again, e.g.
// after a pause on WABULK_PAUSE_ON's E110 and a balance top-up. Resuming a running queue is no
// error; a queue asynq does not know is ErrUnknownQueue.
func (o *Ops) Resume(queue string) error { return o.setPaused(queue, false) }

func (o *Ops) setPaused(queue string, pause bool) error {
	if queue != "" && queue != o.cfg.Queue {
		q, err := o.queueCounts(queue)
		if err != nil {
			return err
		}
		if !q.Exists {
			return fmt.Errorf("%w %q: neither %s (every lane) nor a queue on this Redis (wabulk queue ls lists them)",
				ErrUnknownQueue, queue, o.cfg.Queue)
		}
		return o.setOnePaused(q, pause)
	}
	names, err := o.namespaceQueues()
	if err != nil {
		return err
	}
	for _, n := range names {
		q, err := o.queueCounts(n)
		if err != nil {
			return err
		}
		if err := o.setOnePaused(q, pause); err != nil {
			return err
		}
	}
	return nil
}

// setOnePaused pauses or resumes one queue whose state was just read. A repeat is not an
// error, nor is losing the race to another pause or resume (a worker's WABULK_PAUSE_ON, a
// second operator). The single queue named after the namespace is paused even before it exists
// (asynq keeps the flag), so a task put there later waits too.
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

// Queues returns the counts of every queue asynq knows on this Redis, sorted by name, with this
// Ops's queue first even when it does not exist yet.
func (o *Ops) Queues() ([]QueueCounts, error) {
	names, err := o.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(names)
	names = slices.DeleteFunc(names, func(n string) bool { return n == o.cfg.Queue })
	names = append([]string{o.cfg.Queue}, names...)
	out := make([]QueueCounts, 0, len(names))
	for _, n := range names {
		q, err := o.QueueCounts(n)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}
