package ops

import (
	"fmt"
	"slices"
)

// Pause stops workers from taking jobs of queue; empty or the namespace (WABULK_QUEUE) means
// the single queue and every lane of it. Jobs already running finish; the rest wait in Redis
// until Resume.
func (o *Ops) Pause(queue string) error { return o.setPaused(queue, true) }

// Resume lets workers take jobs of queue (empty or the namespace: all of its queues) again, e.g.
// after a pause on WABULK_PAUSE_ON's E110 and a balance top-up.
func (o *Ops) Resume(queue string) error { return o.setPaused(queue, false) }

func (o *Ops) setPaused(queue string, pause bool) error {
	verb, act := "resume", o.insp.UnpauseQueue
	if pause {
		verb, act = "pause", o.insp.PauseQueue
	}
	if queue != "" && queue != o.cfg.Queue {
		if err := act(queue); err != nil {
			return fmt.Errorf("%s %s: %w", verb, queue, err)
		}
		return nil
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
		if q.Paused == pause && (q.Exists || !pause) {
			continue // already so: a repeat is not an error
		}
		if err := act(n); err != nil {
			return fmt.Errorf("%s %s: %w", verb, n, err)
		}
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
