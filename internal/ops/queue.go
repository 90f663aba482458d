package ops

import (
	"fmt"
	"slices"
)

// Pause stops workers from taking jobs of queue (empty: this Ops's queue); jobs already running
// finish. The jobs wait in Redis until Resume.
func (o *Ops) Pause(queue string) error {
	if queue == "" {
		queue = o.cfg.Queue
	}
	if err := o.insp.PauseQueue(queue); err != nil {
		return fmt.Errorf("pause %s: %w", queue, err)
	}
	return nil
}

// Resume lets workers take jobs of queue (empty: this Ops's queue) again, e.g. after a pause on
// WABULK_PAUSE_ON's E110 and a balance top-up.
func (o *Ops) Resume(queue string) error {
	if queue == "" {
		queue = o.cfg.Queue
	}
	if err := o.insp.UnpauseQueue(queue); err != nil {
		return fmt.Errorf("resume %s: %w", queue, err)
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
