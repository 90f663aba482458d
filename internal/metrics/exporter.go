package metrics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wabulk/wabulk/internal/store"
)

// The lane exporter. The backlog, pauses, campaign progress and sender rates are facts of the
// namespace in Redis, not of a process: if every worker exported them, a sum over pods would
// count each task once per pod. So every worker and `wabulk serve` runs an Exporter, and only the
// one holding the namespace's lease (a Redis key with a TTL, renewed by its holder) exports them;
// the others export wabulk_lane_exporter 0. serve contends too, so the backlog stays visible,
// and KEDA can scale the workers up from zero, while no worker runs.
const (
	// LeaseName is the lease's key in the namespace (wabulk:{ns}:exporter).
	LeaseName = "exporter"
	// LeaseTTL is how long the lease outlives its holder's last renewal; LeaseEvery how often
	// every exporter tries to take or renew it. A holder that dies is replaced within
	// LeaseTTL + LeaseEvery; one that stops frees the lease at once.
	LeaseTTL   = 15 * time.Second
	LeaseEvery = 5 * time.Second
	// DueWithin is how far ahead a scheduled task counts as runnable: about the time a new worker
	// pod takes to start and take work, so pods are up when the tasks come due, and a campaign
	// scheduled for tomorrow holds no idle pods today.
	DueWithin = 2 * time.Minute
	// collectTimeout bounds the Redis reads of one scrape (Prometheus' default scrape timeout
	// is 10 s).
	collectTimeout = 5 * time.Second
)

// The states of wabulk_lane_tasks and wabulk_queue_tasks, and of wabulk_campaign_messages.
var (
	taskStates     = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}
	campaignStates = []string{"enqueued", "sent", "dead"}
)

// Exporter exports the namespace's lanes while its process holds the lease. Register it, then
// Run it until the process stops.
type Exporter struct {
	ledger *store.Ledger
	queue  string
	id     string
	now    func() time.Time

	mu     sync.Mutex
	leader bool

	exporter, queueTasks, queuePaused, laneTasks, lanePaused, runnable, campaign, campaigns, senderRate *prometheus.Desc
}

// NewExporter returns an Exporter of l's namespace.
func NewExporter(l *store.Ledger) *Exporter {
	host, _ := os.Hostname()
	b := make([]byte, 8)
	rand.Read(b)
	return &Exporter{ledger: l, queue: l.Namespace(), id: host + ":" + hex.EncodeToString(b), now: time.Now,
		exporter: LaneExporter.Desc(), queueTasks: QueueTasks.Desc(), queuePaused: QueuePaused.Desc(),
		laneTasks: LaneTasks.Desc(), lanePaused: LanePaused.Desc(), runnable: Runnable.Desc(),
		campaign: CampaignMessages.Desc(), campaigns: Campaigns.Desc(), senderRate: SenderRate.Desc()}
}

// Leader reports whether this process held the lease at its last try.
func (e *Exporter) Leader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Run takes or renews the lease now and every LeaseEvery until ctx ends, then frees it if held.
func (e *Exporter) Run(ctx context.Context) {
	t := time.NewTicker(LeaseEvery)
	defer t.Stop()
	for {
		tctx, cancel := context.WithTimeout(ctx, LeaseEvery)
		ok, err := e.ledger.HoldLease(tctx, LeaseName, e.id, LeaseTTL)
		cancel()
		e.mu.Lock()
		e.leader = ok && err == nil
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			e.mu.Lock()
			e.leader = false
			e.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			e.ledger.ReleaseLease(rctx, LeaseName, e.id)
			cancel()
			return
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{e.exporter, e.queueTasks, e.queuePaused, e.laneTasks, e.lanePaused,
		e.runnable, e.campaign, e.campaigns, e.senderRate} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: wabulk_lane_exporter always, the rest only on the
// leader and only when Redis answered (no sample rather than a wrong one; wabulk_redis_up says
// why).
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	leader := e.Leader()
	ch <- prometheus.MustNewConstMetric(e.exporter, prometheus.GaugeValue, b2f(leader), e.queue)
	if !leader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	ms, err := e.read(ctx)
	if err != nil {
		return
	}
	for _, m := range ms {
		ch <- m
	}
}

// read builds the leader's series from Redis.
func (e *Exporter) read(ctx context.Context) ([]prometheus.Metric, error) {
	lanes, err := e.ledger.LiveLanes(ctx)
	if err != nil {
		return nil, err
	}
	queues := make([]string, len(lanes))
	for i, ln := range lanes {
		queues[i] = ln.Name
	}
	stats, err := e.ledger.Stats(ctx, queues, e.now().Add(DueWithin))
	if err != nil {
		return nil, err
	}
	paused, err := e.ledger.NamespacePaused(ctx)
	if err != nil {
		return nil, err
	}
	// Lanes left live and empty by workers that stopped before they retired them: retired here
	// once idle, so the next scrapes need not read them.
	var idle []store.Lane
	for i, s := range stats {
		if s.Pending+s.Active+s.Scheduled+s.Retry == 0 && !s.Paused {
			idle = append(idle, lanes[i])
		}
	}
	defer e.ledger.RetireIdle(ctx, idle)
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	var total [6]int64
	var runnable int64
	for i, s := range stats {
		n := byState(s)
		for j := range n {
			total[j] += n[j]
		}
		runnable += s.Runnable()
		ln := lanes[i]
		for j, st := range taskStates {
			gauge(e.laneTasks, float64(n[j]), e.queue, ln.Campaign, ln.Sender, st)
		}
		gauge(e.lanePaused, b2f(s.Paused), e.queue, ln.Campaign, ln.Sender)
	}
	for j, st := range taskStates {
		gauge(e.queueTasks, float64(total[j]), e.queue, st)
	}
	gauge(e.queuePaused, b2f(paused), e.queue)
	gauge(e.runnable, float64(runnable), e.queue)

	campaigns, senders := map[string]bool{}, map[string]bool{}
	for _, ln := range lanes {
		campaigns[ln.Campaign], senders[ln.Sender] = true, true
	}
	counts, err := e.ledger.CountsOf(ctx, slices.Sorted(maps.Keys(campaigns)))
	if err != nil {
		return nil, err
	}
	for _, cn := range counts {
		for i, v := range []int64{cn.Enqueued, cn.Completed, cn.Dead} {
			gauge(e.campaign, float64(v), e.queue, cn.Campaign, campaignStates[i])
		}
	}
	active, finished, err := e.ledger.IndexCounts(ctx)
	if err != nil {
		return nil, err
	}
	gauge(e.campaigns, float64(active), e.queue, "active")
	gauge(e.campaigns, float64(finished), e.queue, "finished")
	overrides, err := e.ledger.SenderRates(ctx)
	if err != nil {
		return nil, err
	}
	def, haveDef, err := e.ledger.DefaultSenderRate(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range slices.Sorted(maps.Keys(senders)) {
		if r, ok := overrides[s]; ok {
			gauge(e.senderRate, r.Rate, e.queue, s)
		} else if haveDef {
			gauge(e.senderRate, def.Rate, e.queue, s)
		}
	}
	return out, nil
}

// byState lists s's sizes in the order of taskStates.
func byState(s store.QueueStats) [6]int64 {
	return [6]int64{s.Pending, s.Active, s.Scheduled, s.Retry, s.Archived, s.Completed}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
