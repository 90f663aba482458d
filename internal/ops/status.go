package ops

import (
	"context"
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
	// FinishedCampaigns is how many finished campaigns the namespace keeps (WABULK_RETENTION),
	// listed in Campaigns or not; absent for one campaign.
	FinishedCampaigns int64 `json:"finished_campaigns,omitempty"`
	// UnlistedFinished is how many of them Campaigns does not list.
	UnlistedFinished int64 `json:"-"`
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

// DefaultFinished is how many of the most recently finished campaigns status, campaign ls and
// queue ls list beside the active ones, unless asked for another number.
const DefaultFinished = 10

// View says what a view of the namespace shows.
type View struct {
	// Campaign limits the view to one campaign. Default: the namespace.
	Campaign string
	// Finished is how many of the most recently finished campaigns to list beside every active
	// one; negative lists every one (a cost that grows with them), 0 none.
	Finished int
}

// QueueCounts returns the counts of queue, in one round trip. Empty or the namespace
// (WABULK_QUEUE) means the whole namespace: every lane asynq lists, summed, paused when every one
// of them that exists is paused.
func (o *Ops) QueueCounts(queue string) (QueueCounts, error) {
	ctx := context.Background()
	if queue != "" && queue != o.cfg.Queue {
		qs, err := o.queueCounts(ctx, []string{queue})
		if err != nil {
			return QueueCounts{}, err
		}
		return qs[0], nil
	}
	names, err := o.namespaceQueues(ctx)
	if err != nil {
		return QueueCounts{}, err
	}
	return o.sumQueues(ctx, o.cfg.Queue, names)
}

// sumQueues sums the counts of queues under name, paused when every one of them that exists is.
func (o *Ops) sumQueues(ctx context.Context, name string, names []string) (QueueCounts, error) {
	qs, err := o.queueCounts(ctx, names)
	if err != nil {
		return QueueCounts{}, err
	}
	return sum(name, qs), nil
}

// sum sums qs under name, paused when every one of them that exists is.
func sum(name string, qs []QueueCounts) QueueCounts {
	sum := QueueCounts{Queue: name}
	paused, exist := 0, 0
	for _, q := range qs {
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
	return sum
}

// namespaceQueues are every lane of the namespace asynq lists, sorted by name.
func (o *Ops) namespaceQueues(ctx context.Context) ([]string, error) {
	all, err := o.ledger.QueueNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return o.ofNamespace(all), nil
}

// ofNamespace picks the lanes of the namespace out of names, sorted.
func (o *Ops) ofNamespace(names []string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, o.cfg.Queue+":") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// queueCounts returns the counts of queues, in their order, in one round trip (per Redis node).
// A queue asynq does not list has zero counts and Exists false.
func (o *Ops) queueCounts(ctx context.Context, queues []string) ([]QueueCounts, error) {
	now := time.Now()
	stats, err := o.ledger.Stats(ctx, queues, now)
	if err != nil {
		return nil, err
	}
	out := make([]QueueCounts, len(queues))
	for i, s := range stats {
		out[i] = QueueCounts{Queue: queues[i]}
		if !s.Exists {
			continue
		}
		out[i] = QueueCounts{
			Queue: queues[i], Exists: true, Paused: s.Paused,
			Pending: int(s.Pending), Scheduled: int(s.Scheduled), Retry: int(s.Retry), Active: int(s.Active),
			Completed: int(s.Completed), Archived: int(s.Archived),
			ProcessedToday: int(s.ProcessedToday), FailedToday: int(s.FailedToday),
		}
		if !s.OldestPending.IsZero() {
			out[i].Latency = max(0, now.Sub(s.OldestPending))
		}
	}
	return out, nil
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

// CampaignList is what a view lists of the namespace's campaigns.
type CampaignList struct {
	// Campaigns are every active campaign and the most recently finished ones asked for,
	// sorted by id.
	Campaigns []store.CampaignInfo
	// Finished is how many finished campaigns the namespace keeps, listed or not, and Unlisted
	// how many of them Campaigns does not list.
	Finished, Unlisted int64
}

// ListCampaigns returns the counts, state and timing of every campaign not finished and of the
// `finished` most recently finished (negative: every one), sorted by id, with how many finished
// campaigns there are. Its cost follows the campaigns it lists: the finished ones kept for the
// retention are only counted. An active campaign found finished (its lanes retired by an older
// worker) is moved to the finished ones.
func (o *Ops) ListCampaigns(ctx context.Context, finished int) (CampaignList, error) {
	ix, err := o.ledger.CampaignIndex(ctx, finished)
	if err != nil {
		return CampaignList{}, err
	}
	active := make(map[string]bool, len(ix.Active))
	ids := slices.Clone(ix.Active)
	for _, id := range ix.Active {
		active[id] = true
	}
	for _, id := range ix.Finished {
		if !active[id] {
			ids = append(ids, id)
		}
	}
	cs, err := o.ledger.CampaignInfos(ctx, ids)
	if err != nil {
		return CampaignList{}, err
	}
	total, err := o.finish(ctx, cs, active, ix.FinishedTotal)
	if err != nil {
		return CampaignList{}, err
	}
	slices.SortFunc(cs, func(a, b store.CampaignInfo) int { return strings.Compare(a.Campaign, b.Campaign) })
	if cs == nil {
		cs = []store.CampaignInfo{}
	}
	return CampaignList{Campaigns: cs, Finished: total, Unlisted: max(0, ix.FinishedTotal-int64(len(ix.Finished)))}, nil
}

// finish moves the active campaigns of cs that are finished to the finished ones, retiring
// their lanes that no worker retired (idle for two minutes), and returns how many finished
// campaigns there are then (finished: before). Workers do it as they retire lanes; this catches
// what they did not see: lanes left live when the workers stopped, or retired by an older wabulk.
func (o *Ops) finish(ctx context.Context, cs []store.CampaignInfo, active map[string]bool, finished int64) (int64, error) {
	var done []string
	var lanes []store.Lane
	for _, c := range cs {
		if active[c.Campaign] && c.Finished() {
			done = append(done, c.Campaign)
			for _, ln := range c.Lanes {
				lanes = append(lanes, store.Lane{Name: ln, Campaign: c.Campaign})
			}
		}
	}
	if len(done) == 0 {
		return finished, nil
	}
	if _, err := o.ledger.RetireIdle(ctx, lanes); err != nil {
		return 0, err
	}
	if _, err := o.ledger.FinishCampaigns(ctx, done); err != nil {
		return 0, err
	}
	_, total, err := o.ledger.IndexCounts(ctx)
	return total, err
}

// Status returns the counts of campaign, with its lanes' queue counts, or of the namespace when
// campaign is empty: its active campaigns and the DefaultFinished most recently finished.
func (o *Ops) Status(ctx context.Context, campaign string) (Status, error) {
	return o.StatusOf(ctx, View{Campaign: campaign, Finished: DefaultFinished})
}

// StatusOf returns the counts of v.Campaign, with its lanes' queue counts, or of the namespace:
// the campaigns ListCampaigns lists (sorted by id), and the queue counts summed over the single
// queue and those campaigns' lanes. A campaign the ledger does not know is ErrUnknownCampaign.
func (o *Ops) StatusOf(ctx context.Context, v View) (Status, error) {
	st := Status{Time: time.Now().UTC()}
	var err error
	if st.Unmatched, err = o.Unmatched(ctx); err != nil {
		return Status{}, err
	}
	if v.Campaign != "" {
		c, err := o.ledger.Campaign(ctx, v.Campaign)
		if err != nil {
			return Status{}, err
		}
		st.Queue, err = o.sumQueues(ctx, o.cfg.Queue+":"+v.Campaign, c.Lanes)
		if err != nil {
			return Status{}, err
		}
		st.Campaigns = []store.CampaignInfo{c}
		return st, nil
	}
	list, err := o.ListCampaigns(ctx, v.Finished)
	if err != nil {
		return Status{}, err
	}
	st.Campaigns, st.FinishedCampaigns, st.UnlistedFinished = list.Campaigns, list.Finished, list.Unlisted
	var queues []string
	for _, c := range list.Campaigns {
		queues = append(queues, c.Lanes...)
	}
	st.Queue, err = o.sumQueues(ctx, o.cfg.Queue, queues)
	return st, err
}

// Watch calls render with a fresh Status every interval until ctx ends (then it returns nil).
// An error reading Redis is rendered as it happens and the watch goes on: an operator watching a
// campaign should see Redis come back, not lose the screen.
func (o *Ops) Watch(ctx context.Context, v View, interval time.Duration, render func(Status, error) error) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := o.StatusOf(ctx, v)
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
