package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wabulk/wabulk/internal/store"
)

// ErrUnknownCampaign is returned for a campaign the queue's ledger has no record of.
var ErrUnknownCampaign = store.ErrUnknownCampaign

// QueueCounts are one asynq queue's tasks by state, as asynq counts them.
type QueueCounts struct {
	Queue string `json:"queue"`
	// Exists is false when no task was ever enqueued into the queue (all counts are zero).
	Exists    bool `json:"exists"`
	Paused    bool `json:"paused"`
	Pending   int  `json:"pending"`
	Scheduled int  `json:"scheduled"`
	Retry     int  `json:"retry"`
	Active    int  `json:"active"`
	Completed int  `json:"completed"` // still held for the retention window
	Archived  int  `json:"archived"`  // dead letters asynq still holds (it trims past 10,000)
	// ProcessedToday and FailedToday are asynq's daily counters (UTC day).
	ProcessedToday int `json:"processed_today"`
	FailedToday    int `json:"failed_today"`
	// Latency is how long the oldest pending task has waited.
	Latency time.Duration `json:"latency_ns"`
}

// Status is a queue's counts and its campaigns' counts and states at one moment. For one
// campaign, Queue sums that campaign's lanes only.
type Status struct {
	Time      time.Time            `json:"time"`
	Queue     QueueCounts          `json:"queue"`
	Campaigns []store.CampaignInfo `json:"campaigns"`
	// Unmatched counts the namespace's callback statuses for message ids wabulk does not know.
	Unmatched int64 `json:"unmatched"`
}

// Finished reports whether every campaign shown is finished (nothing left to send).
func (s Status) Finished() bool {
	for _, c := range s.Campaigns {
		if !c.Finished() {
			return false
		}
	}
	return true
}

// QueueCounts returns the counts of queue, one Lua call per queue. Empty or the namespace
// (WABULK_QUEUE) means the whole namespace: the single queue and every lane summed, paused when
// every one of them that exists is paused.
func (o *Ops) QueueCounts(queue string) (QueueCounts, error) {
	if queue != "" && queue != o.cfg.Queue {
		return o.queueCounts(queue)
	}
	names, err := o.namespaceQueues()
	if err != nil {
		return QueueCounts{}, err
	}
	return o.sumQueues(o.cfg.Queue, names)
}

// sumQueues sums the counts of queues under name, paused when every one of them that exists is.
func (o *Ops) sumQueues(name string, names []string) (QueueCounts, error) {
	sum := QueueCounts{Queue: name}
	paused, exist := 0, 0
	for _, n := range names {
		q, err := o.queueCounts(n)
		if err != nil {
			return QueueCounts{}, err
		}
		if !q.Exists {
			continue
		}
		sum.Exists = true
		exist++
		if q.Paused {
			paused++
		}
		sum.Pending += q.Pending
		sum.Scheduled += q.Scheduled
		sum.Retry += q.Retry
		sum.Active += q.Active
		sum.Completed += q.Completed
		sum.Archived += q.Archived
		sum.ProcessedToday += q.ProcessedToday
		sum.FailedToday += q.FailedToday
		sum.Latency = max(sum.Latency, q.Latency)
	}
	sum.Paused = exist > 0 && paused == exist
	return sum, nil
}

// namespaceQueues are the single queue and every lane asynq lists, sorted by name.
func (o *Ops) namespaceQueues() ([]string, error) {
	all, err := o.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	names := []string{o.cfg.Queue}
	for _, n := range all {
		if strings.HasPrefix(n, o.cfg.Queue+":") {
			names = append(names, n)
		}
	}
	slices.Sort(names[1:])
	return names, nil
}

// queueCounts returns the counts of one asynq queue in one Lua call.
func (o *Ops) queueCounts(queue string) (QueueCounts, error) {
	info, err := o.insp.GetQueueInfo(queue)
	if err != nil && !o.queueExists(queue) {
		// asynq passes its "queue does not exist" through untranslated (errors.Is with
		// asynq.ErrQueueNotFound misses it), so ask for the queue list instead of reading text.
		return QueueCounts{Queue: queue}, nil
	}
	if err != nil {
		return QueueCounts{}, fmt.Errorf("queue %s: %w", queue, err)
	}
	return QueueCounts{
		Queue: queue, Exists: true, Paused: info.Paused,
		Pending: info.Pending, Scheduled: info.Scheduled, Retry: info.Retry, Active: info.Active,
		Completed: info.Completed, Archived: info.Archived,
		ProcessedToday: info.Processed, FailedToday: info.Failed, Latency: info.Latency,
	}, nil
}

// Campaign returns one campaign's counts from the ledger: one round trip however many jobs it has.
func (o *Ops) Campaign(ctx context.Context, campaign string) (store.Counts, error) {
	return o.ledger.Counts(ctx, campaign)
}

// CampaignInfo returns one campaign's counts, state and timing; ErrUnknownCampaign when the
// ledger has no record of it. It never reads the list of all campaigns.
func (o *Ops) CampaignInfo(ctx context.Context, campaign string) (store.CampaignInfo, error) {
	return o.ledger.Campaign(ctx, campaign)
}

// Campaigns calls fn with each campaign's counts, state and timing, in no particular order,
// reading the campaign list in batches (it may hold many thousands), until fn returns false.
func (o *Ops) Campaigns(ctx context.Context, fn func(store.CampaignInfo) bool) error {
	return o.ledger.EachCampaign(ctx, func(id string) (bool, error) {
		c, err := o.ledger.Campaign(ctx, id)
		if errors.Is(err, store.ErrUnknownCampaign) {
			return true, nil // expired while listed
		}
		if err != nil {
			return false, err
		}
		return fn(c), nil
	})
}

// Status returns the counts of campaign, with its lanes' queue counts, or of every campaign and
// the whole namespace when campaign is empty (sorted by name). A campaign the ledger does not
// know is ErrUnknownCampaign.
func (o *Ops) Status(ctx context.Context, campaign string) (Status, error) {
	st := Status{Time: time.Now().UTC()}
	var err error
	if st.Unmatched, err = o.Unmatched(ctx); err != nil {
		return Status{}, err
	}
	if campaign != "" {
		c, err := o.ledger.Campaign(ctx, campaign)
		if err != nil {
			return Status{}, err
		}
		st.Queue, err = o.sumQueues(o.cfg.Queue+":"+campaign, c.Lanes)
		if err != nil {
			return Status{}, err
		}
		st.Campaigns = []store.CampaignInfo{c}
		return st, nil
	}
	q, err := o.QueueCounts("")
	if err != nil {
		return Status{}, err
	}
	st.Queue = q
	st.Campaigns, err = o.ListCampaigns(ctx)
	return st, err
}

// ListCampaigns returns every campaign's counts, state and timing, sorted by id.
func (o *Ops) ListCampaigns(ctx context.Context) ([]store.CampaignInfo, error) {
	cs := []store.CampaignInfo{}
	err := o.Campaigns(ctx, func(c store.CampaignInfo) bool {
		cs = append(cs, c)
		return true
	})
	slices.SortFunc(cs, func(a, b store.CampaignInfo) int { return strings.Compare(a.Campaign, b.Campaign) })
	return cs, err
}

// Watch calls render with a fresh Status every interval until ctx ends (then it returns nil).
// An error reading Redis is rendered as it happens and the watch goes on: an operator watching a
// campaign should see Redis come back, not lose the screen.
func (o *Ops) Watch(ctx context.Context, campaign string, interval time.Duration, render func(Status, error) error) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := o.Status(ctx, campaign)
		if ctx.Err() != nil {
			return nil
		}
		if rerr := render(st, err); rerr != nil {
			return rerr
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// queueExists reports whether asynq knows the queue. When Redis does not answer it says yes,
// so the caller reports the error it already has.
func (o *Ops) queueExists(queue string) bool {
	qs, err := o.insp.Queues()
	return err != nil || slices.Contains(qs, queue)
}
