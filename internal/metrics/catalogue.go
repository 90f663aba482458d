// Package metrics is the one list of wabulk's Prometheus metrics and the collectors that export
// the namespace's state once. Every wabulk_* series a process exports is built from a Def here,
// docs/metrics.md documents exactly this list (a test compares them), and the monitoring tests
// check that real processes export exactly these names and labels.
//
// Cardinality is bounded by construction: sender labels are the business's own numbers, capped
// per process (Limit); codes are Kaleyra's documented codes, wabulk's own, HTTP statuses or
// "other"; campaign labels appear only on the series the lane exporter writes, for campaigns
// with a live lane, so a finished campaign's series end with it. No label ever holds a recipient,
// a TaskID or a secret.
package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is a metric's Prometheus type.
type Kind string

// The kinds wabulk exports.
const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
)

// Who exports a metric.
const (
	ByWorker   = "worker"
	ByServe    = "serve"
	ByBoth     = "worker, serve"
	ByExporter = "lane exporter (one process)"
)

// Def is one metric: its name, type, labels, which processes export it, and its help text.
type Def struct {
	Name   string
	Kind   Kind
	Labels []string
	By     string
	Help   string
}

// Desc is the Def as a prometheus.Desc, for collectors that build const metrics.
func (d Def) Desc() *prometheus.Desc {
	return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)
}

// CounterVec builds the Def as a counter vector.
func (d Def) CounterVec() *prometheus.CounterVec {
	d.must(Counter)
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

// HistogramVec builds the Def as a histogram vector with buckets.
func (d Def) HistogramVec(buckets []float64) *prometheus.HistogramVec {
	d.must(Histogram)
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: buckets}, d.Labels)
}

func (d Def) must(k Kind) {
	if d.Kind != k {
		panic("metrics: " + d.Name + " is a " + string(d.Kind) + ", not a " + string(k))
	}
}

// The metrics. Label names are spelt the same everywhere: queue is WABULK_QUEUE, sender the
// sender's digits (or "default" for jobs that name none, sent from the worker's KALEYRA_FROM).
var (
	// Every process that serves /metrics (worker, serve).
	BuildInfo = Def{"wabulk_build_info", Gauge, []string{"role", "version"}, ByBoth,
		"Always 1; role is worker or serve, version the build's version: count it for the pods running."}
	RedisUp = Def{"wabulk_redis_up", Gauge, nil, ByBoth,
		"1 when Redis answered a PING during this scrape, 0 when it did not within 1 s."}
	RedisPing = Def{"wabulk_redis_ping_seconds", Gauge, nil, ByBoth,
		"How long the PING of this scrape took (the timeout when it failed)."}
	LaneExporter = Def{"wabulk_lane_exporter", Gauge, []string{"queue"}, ByBoth,
		"1 on the one process that holds the namespace's exporter lease and exports the lane_*, queue_*, campaign*, sender_* and runnable series; 0 elsewhere."}

	// Worker.
	Sends = Def{"wabulk_sends_total", Counter, []string{"sender", "outcome", "code"}, ByWorker,
		"Job attempts by sender, outcome (sent, retry, dead, requeued, cancelled, suppressed) and code (Kaleyra's, wabulk's own, HTTP <status>, timeout, network, other; empty when sent)."}
	KaleyraRequests = Def{"wabulk_kaleyra_requests_total", Counter, []string{"class", "code"}, ByWorker,
		"Kaleyra API calls by answer class (2xx, 4xx, 5xx, timeout, network) and code (empty for 2xx)."}
	KaleyraLatency = Def{"wabulk_kaleyra_request_seconds", Histogram, nil, ByWorker,
		"Duration of one Kaleyra API call, answer included."}
	RateLimitWait = Def{"wabulk_ratelimit_wait_seconds", Histogram, []string{"sender"}, ByWorker,
		"Time a job waited for its sender's turn under the shared per-sender rate."}
	Pauses = Def{"wabulk_pauses_total", Counter, []string{"code"}, ByWorker,
		"Times this worker paused the queues on an account-level code of WABULK_PAUSE_ON (each configured code starts at 0)."}

	// serve.
	HTTPRequests = Def{"wabulk_http_requests_total", Counter, []string{"route", "method", "code"}, ByServe,
		"HTTP requests answered by wabulk serve, by route pattern, method and status code."}
	HTTPDuration = Def{"wabulk_http_request_duration_seconds", Histogram, []string{"route"}, ByServe,
		"Time from a request's header to the end of its answer, by route pattern."}
	APIRecipients = Def{"wabulk_api_recipients_total", Counter, []string{"status"}, ByServe,
		"Recipients posted to the API by outcome (enqueued, duplicate, rejected, suppressed)."}
	CallbackStatuses = Def{"wabulk_callback_statuses_total", Counter, []string{"status", "code"}, ByServe,
		"Statuses received in Kaleyra's status callbacks and recorded, by status (sent, delivered, read, failed, not_sent; unmatched for those parked under an unknown message id; malformed for refused bodies) and Meta error code (digits; other)."}

	// The lane exporter: read from Redis on each scrape by the one process holding the lease.
	QueueTasks = Def{"wabulk_queue_tasks", Gauge, []string{"queue", "state"}, ByExporter,
		"Tasks of every live lane, summed, by state (pending, active, scheduled, retry, archived, completed)."}
	QueuePaused = Def{"wabulk_queue_paused", Gauge, []string{"queue"}, ByExporter,
		"1 when the namespace is paused (`wabulk queue pause` without a queue, or a pause on an account code): lanes registered meanwhile are paused too."}
	LaneTasks = Def{"wabulk_lane_tasks", Gauge, []string{"queue", "campaign", "sender", "state"}, ByExporter,
		"Tasks of each live lane by state (pending, active, scheduled, retry, archived, completed)."}
	LanePaused = Def{"wabulk_lane_paused", Gauge, []string{"queue", "campaign", "sender"}, ByExporter,
		"1 when the live lane is paused, else 0."}
	Runnable = Def{"wabulk_runnable_tasks", Gauge, []string{"queue"}, ByExporter,
		"The work workers can do now: pending, active and retrying tasks plus scheduled ones due within 2 minutes, of every live lane that is not paused. KEDA scales on it."}
	CampaignMessages = Def{"wabulk_campaign_messages", Gauge, []string{"queue", "campaign", "state"}, ByExporter,
		"Messages of each campaign with a live lane by state (enqueued, sent, dead), from its ledger."}
	Campaigns = Def{"wabulk_campaigns", Gauge, []string{"queue", "state"}, ByExporter,
		"Campaigns the namespace keeps, by state: active (not finished: a lane not yet drained, or waiting for its send time) or finished (kept for WABULK_RETENTION)."}
	SenderRate = Def{"wabulk_sender_rate", Gauge, []string{"queue", "sender"}, ByExporter,
		"Messages per second each sender with a live lane may send (its `wabulk sender rate` override, else the workers' WABULK_RATE)."}
)

// All lists every Def, in the order docs/metrics.md shows them.
func All() []Def {
	return []Def{BuildInfo, RedisUp, RedisPing, LaneExporter,
		Sends, KaleyraRequests, KaleyraLatency, RateLimitWait, Pauses,
		HTTPRequests, HTTPDuration, APIRecipients, CallbackStatuses,
		QueueTasks, QueuePaused, LaneTasks, LanePaused, Runnable, CampaignMessages, Campaigns, SenderRate}
}

// Standard are the name prefixes of the standard collectors every process adds (Go runtime,
// process) and of promhttp's own series; they are documented as groups, not one by one.
var Standard = []string{"go_", "process_", "promhttp_"}

// IsStandard reports whether name belongs to a standard collector.
func IsStandard(name string) bool {
	for _, p := range Standard {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
