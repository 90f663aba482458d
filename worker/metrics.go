package worker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/store"
)

// workerMetrics are the worker's own Prometheus series (docs/metrics.md); the namespace's backlog is
// the lane exporter's (metrics.Exporter).
type workerMetrics struct {
	sends    *prometheus.CounterVec
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
	pauses   *prometheus.CounterVec
	senders  *metrics.Limit
}

func newMetrics(reg prometheus.Registerer, pauseOn []string) *workerMetrics {
	m := &workerMetrics{
		sends:    metrics.Sends.CounterVec(),
		requests: metrics.KaleyraRequests.CounterVec(),
		latency:  metrics.KaleyraLatency.HistogramVec(prometheus.ExponentialBuckets(0.01, 2, 12)),
		wait:     metrics.RateLimitWait.HistogramVec(prometheus.ExponentialBuckets(0.001, 2.5, 14)),
		pauses:   metrics.Pauses.CounterVec(),
		senders:  metrics.NewLimit(metrics.MaxSenders),
	}
	// Each configured code's series exists from the start, so the first pause is an increase
	// from 0 that rate() and increase() see.
	for _, c := range pauseOn {
		m.pauses.WithLabelValues(metrics.Code(c))
	}
	if reg != nil {
		reg.MustRegister(m.sends, m.requests, m.latency, m.wait, m.pauses)
	}
	return m
}

// sender is the sender label of a job sent from `from` as the job named it (empty: the worker's
// KALEYRA_FROM): the sender part of its lane, so sends join the lane exporter's series.
func (m *workerMetrics) sender(from string) string { return m.senders.Value(store.SenderPart(from)) }

// send counts one attempt.
func (m *workerMetrics) send(sender, outcome, code string) {
	m.sends.WithLabelValues(sender, outcome, metrics.Code(code)).Inc()
}

// request counts and times one Kaleyra call; ke is nil when Kaleyra accepted the message. A
// message the client refused before sending ("invalid") made no call and is not counted.
func (m *workerMetrics) request(seconds float64, status int, ke *kaleyra.Error) {
	if ke != nil && ke.Label() == "invalid" {
		return
	}
	m.latency.WithLabelValues().Observe(seconds)
	if ke == nil {
		m.requests.WithLabelValues(metrics.Class(status, false), "").Inc()
		return
	}
	m.requests.WithLabelValues(metrics.Class(ke.Status, ke.Timeout), metrics.Code(ke.Label())).Inc()
}
