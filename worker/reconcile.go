package worker

import (
	"context"
	"errors"
	"regexp"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// Codes of dead letters the reconciler records for tasks asynq archived on its own.
const (
	// CodeInterrupted: the worker died during the job's last attempt; asynq's recoverer
	// archived it when the lease expired. Kaleyra may or may not have received it.
	CodeInterrupted = "INTERRUPTED"
	// CodeArchived: archived from outside wabulk (asynqmon, asynq's CLI).
	CodeArchived = "ARCHIVED"
)

// reconciler records in the ledger every task asynq archived without the handler writing its
// dead letter first: a task an operator archived in asynqmon (a task whose worker died on its
// last attempt gets its record when the dispatcher takes it back). Without it such a job would
// stay unfinished in the campaign's counts and be missing from `wabulk dead`.
//
// It reads only what was archived since its last pass (asynq's archived set is scored by archive
// time), in the lanes where the upkeep's sweep found new archives: one worker at a time, so pods
// add no load as they scale, and no read at all of lanes with nothing new.
type reconciler struct {
	insp   *asynq.Inspector
	ledger *store.Ledger
	log    *zap.Logger
}

// lanesPass records the dead letters of tasks archived in lanes since their last pass.
func (r *reconciler) lanesPass(ctx context.Context, lanes []string) {
	recorded := 0
	for _, q := range lanes {
		n, err := r.passQueue(ctx, q)
		recorded += n
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("reconcile archived tasks", zap.Error(err))
			}
			return
		}
	}
	if recorded > 0 {
		r.log.Info("recorded dead letters archived outside the handler", zap.Int("count", recorded))
	}
}

// passQueue reads one lane's new archives and records what the ledger lacks.
func (r *reconciler) passQueue(ctx context.Context, queue string) (int, error) {
	archived, err := r.ledger.ArchivedSince(ctx, queue, 1000)
	if err != nil {
		return 0, err
	}
	recorded := 0
	for _, a := range archived {
		// Most archived tasks are dead letters the handler wrote itself, and the last second's
		// are read again on the next pass: count only the records this pass added.
		added, err := r.record(ctx, queue, a.ID)
		if err != nil {
			return recorded, err
		}
		if added {
			recorded++
		}
		if err := r.ledger.MarkReconciled(ctx, queue, a); err != nil {
			return recorded, err
		}
	}
	return recorded, nil
}

var codePrefix = regexp.MustCompile(`^([A-Z][A-Z0-9_-]*|HTTP \d{3}|timeout|network|invalid): `)

// record writes the dead letter of one archived task unless the ledger has it, or has it sent,
// and reports whether it wrote one.
func (r *reconciler) record(ctx context.Context, queue, id string) (bool, error) {
	ti, err := r.insp.GetTaskInfo(queue, id)
	if errors.Is(err, asynq.ErrTaskNotFound) {
		return false, nil // deleted or redriven meanwhile
	}
	if err != nil {
		return false, err
	}
	d := store.DeadLetter{TaskID: id, Message: ti.LastErr, Attempt: ti.Retried + 1, Time: ti.LastFailedAt.UTC()}
	if p, err := job.Decode(ti.Payload); err == nil {
		d.Payload = p
	} else {
		d.Raw = clipBytes(ti.Payload, 4096)
	}
	if dead, err := r.ledger.IsDead(ctx, queue, id); err != nil || dead {
		return false, err
	}
	if sent, err := r.ledger.WasSent(ctx, queue, id); err != nil || sent {
		return false, err
	}
	switch m := codePrefix.FindStringSubmatch(ti.LastErr); {
	case ti.LastErr == asynq.ErrLeaseExpired.Error(): // the recoverer stores only the text
		d.Code = CodeInterrupted
	case m != nil:
		d.Code = m[1]
	default:
		d.Code = CodeArchived
	}
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	if err := r.ledger.Dead(ctx, queue, d); err != nil {
		return false, err
	}
	return true, nil
}
