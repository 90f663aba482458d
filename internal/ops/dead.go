package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/producer"
)

// DeadFilter picks dead letters. Empty fields match everything.
type DeadFilter struct {
	// Campaign limits the search to one campaign. Default: every campaign of the queue.
	Campaign string
	// Code is a Kaleyra code (E110, WA400, …) or "HTTP 4xx" as the worker recorded it.
	Code string
	// Limit is how many to return, newest first; 0 means all. (Only DeadLetters uses it.)
	Limit int
}

// DeadEntry is one dead letter as an operator sees it: the recipient is masked unless PII is full.
type DeadEntry struct {
	Campaign string    `json:"campaign"`
	TaskID   string    `json:"task_id"`
	To       string    `json:"to"`
	From     string    `json:"from,omitempty"`
	Type     string    `json:"type,omitempty"`
	Ref      string    `json:"ref,omitempty"`
	Ref1     string    `json:"ref1,omitempty"`
	Ref2     string    `json:"ref2,omitempty"`
	Code     string    `json:"code"`
	Status   int       `json:"status,omitempty"`
	Message  string    `json:"message"`
	Attempt  int       `json:"attempt"`
	Time     time.Time `json:"time"`
}

// campaigns returns the campaign named, or all the ledger knows. A campaign the ledger does not
// know is ErrUnknownCampaign, as in Status: a typo must not read as "no dead letters".
func (o *Ops) campaigns(ctx context.Context, campaign string) ([]string, error) {
	if campaign != "" {
		ok, err := o.ledger.CampaignExists(ctx, campaign)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w %q in queue %s", ErrUnknownCampaign, campaign, o.cfg.Queue)
		}
		return []string{campaign}, nil
	}
	names, err := o.ledger.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// deadLetters calls fn for each dead letter of campaign whose code is code, matched without
// regard to case (`--code e110` is E110). The ledger compares codes exactly, and codes come
// in both cases (E110, HTTP 502, timeout), so the filter is applied here.
func (o *Ops) deadLetters(ctx context.Context, campaign, code string, fn func(store.DeadLetter) bool) error {
	return o.ledger.DeadLetters(ctx, campaign, "", func(d store.DeadLetter) bool {
		if code != "" && !strings.EqualFold(d.Code, code) {
			return true
		}
		return fn(d)
	})
}

// DeadLetters returns the dead letters that match f, newest first, at most f.Limit of them. It
// reads the ledger's durable record (not asynq's archive, which asynq trims) in batches, keeping
// only the newest f.Limit in memory.
func (o *Ops) DeadLetters(ctx context.Context, f DeadFilter) ([]DeadEntry, error) {
	names, err := o.campaigns(ctx, f.Campaign)
	if err != nil {
		return nil, err
	}
	var out []DeadEntry
	newestFirst := func(a, b DeadEntry) int { return b.Time.Compare(a.Time) }
	for _, c := range names {
		err := o.deadLetters(ctx, c, f.Code, func(d store.DeadLetter) bool {
			out = append(out, NewDeadEntry(c, d, o.cfg.PII))
			// Trim now and then rather than on every append: bounded memory, amortised sorting.
			if f.Limit > 0 && len(out) >= 2*f.Limit+64 {
				slices.SortStableFunc(out, newestFirst)
				out = out[:f.Limit]
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, newestFirst)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// NewDeadEntry is d as operators see it: the recipient masked by pii (unless it is full) both in
// To and in the task id, whose last part is the recipient's digits.
func NewDeadEntry(campaign string, d store.DeadLetter, pii logging.Masker) DeadEntry {
	p := d.Payload
	return DeadEntry{Campaign: campaign, TaskID: pii.TaskID(d.TaskID), To: pii.Phone(p.To), From: p.From, Type: p.Type,
		Ref: p.Ref, Ref1: p.Ref1, Ref2: p.Ref2, Code: d.Code, Status: d.Status, Message: d.Message,
		Attempt: d.Attempt, Time: d.Time}
}

// RedriveReport counts what a redrive did (or, in a dry run, would do).
type RedriveReport struct {
	DryRun bool `json:"dry_run"`
	// Matched is how many dead letters matched the filter.
	Matched int `json:"matched"`
	// Redriven went back in the queue with a fresh retry budget.
	Redriven int `json:"redriven"`
	// AlreadySent had a sent marker: Kaleyra accepted the job, so it is not sent again (its stale
	// dead-letter record is removed).
	AlreadySent int `json:"already_sent"`
	// AlreadyQueued were in the queue already (an earlier redrive that stopped midway, or a
	// retry from asynqmon); only their record is removed.
	AlreadyQueued int `json:"already_queued"`
	// Unreadable records hold no usable payload (poison payloads) and stay where they are.
	Unreadable int `json:"unreadable"`
	// Failed could not be redriven because Redis failed; they stay dead letters.
	Failed int `json:"failed"`
	// ByCode counts the redriven (or, dry run, redrivable) jobs by code.
	ByCode map[string]int `json:"by_code,omitempty"`
}

// Redrive puts the dead letters that match f back in the queue (f.Limit is ignored), each with
// its original TaskID and a fresh retry budget, unless the ledger says it was sent.
//
// The order of the steps never loses a dead letter, whenever the process stops:
//  1. read the record (it stays until step 4);
//  2. delete asynq's archived copy (a task with that TaskID blocks a new enqueue; not found is
//     fine; held in another state means it is queued already: skip 3);
//  3. enqueue the payload (a TaskID conflict means queued already);
//  4. remove the record (store.Undead, which also fixes the counters). Undead removes only the
//     record read in 1: a worker that took the redriven job and dead-lettered it again already
//     wrote a newer one, which stays.
//
// A stop after 2 or 3 leaves the record, so the next redrive finds it again, and every step is
// idempotent. Only after the job is safely in the queue does the record go.
func (o *Ops) Redrive(ctx context.Context, f DeadFilter, dryRun bool) (RedriveReport, error) {
	rep := RedriveReport{DryRun: dryRun, ByCode: map[string]int{}}
	names, err := o.campaigns(ctx, f.Campaign)
	if err != nil {
		return rep, err
	}
	for _, c := range names {
		// Collect first, act after: removing hash fields while HSCAN walks the hash may make
		// the scan miss some; a campaign's matching records fit in memory as task ids and payloads.
		var todo []store.DeadLetter
		if err := o.deadLetters(ctx, c, f.Code, func(d store.DeadLetter) bool {
			todo = append(todo, d)
			return true
		}); err != nil {
			return rep, err
		}
		for _, d := range todo {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			rep.Matched++
			if err := o.redriveOne(ctx, c, d, dryRun, &rep); err != nil {
				rep.Failed++
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
			}
		}
	}
	if len(rep.ByCode) == 0 {
		rep.ByCode = nil
	}
	return rep, nil
}

func (o *Ops) redriveOne(ctx context.Context, campaign string, d store.DeadLetter, dryRun bool, rep *RedriveReport) error {
	if len(d.Raw) > 0 || d.Payload.To == "" || campaign == store.PoisonCampaign {
		rep.Unreadable++
		return nil
	}
	sent, err := o.ledger.WasSent(ctx, d.Scope, d.TaskID)
	if err != nil {
		return err
	}
	if sent {
		// A record beside a sent marker is stale: the job was sent after it was written (a
		// redrive that stopped before removing it, or an archive that never reached asynq).
		// store.Sent removes such a record when it writes the marker; one found here all the
		// same keeps the counts off (the job counts as sent and dead), and goes.
		rep.AlreadySent++
		if !dryRun {
			_, err = o.ledger.Undead(ctx, d)
		}
		return err
	}
	if dryRun {
		rep.Redriven++
		rep.ByCode[d.Code]++
		return nil
	}
	queued, err := o.unarchive(d.Scope, d.TaskID)
	if err != nil {
		return err
	}
	if !queued {
		st, err := o.producer.Requeue(ctx, d.Payload)
		if err != nil {
			return fmt.Errorf("redrive %s: %w", d.TaskID, err)
		}
		queued = st == producer.StatusDuplicate
	}
	undone, err := o.ledger.Undead(ctx, d)
	if err != nil {
		return err
	}
	if !queued && !undone {
		// The redriven job was sent (its marker took the record away) or dead-lettered again
		// (a newer record) before the record could go: it was redriven all the same.
		if err := o.ledger.CountRedriven(ctx, d.Scope); err != nil {
			return err
		}
	}
	if queued {
		rep.AlreadyQueued++
	} else {
		rep.Redriven++
		rep.ByCode[d.Code]++
	}
	return nil
}

// unarchive deletes asynq's archived copy of a dead letter so its TaskID is free again. It
// reports queued when asynq holds the task in another state (pending, scheduled, retry, active):
// then it is in the queue already and must not be enqueued again.
func (o *Ops) unarchive(queue, taskID string) (queued bool, err error) {
	info, err := o.insp.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return false, nil // trimmed by asynq, or deleted by a redrive that stopped midway
	case err != nil:
		return false, fmt.Errorf("redrive %s: %w", taskID, err)
	case info.State != asynq.TaskStateArchived:
		return true, nil
	}
	if err := o.insp.DeleteTask(queue, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return false, fmt.Errorf("redrive %s: delete archived task: %w", taskID, err)
	}
	return false, nil
}
