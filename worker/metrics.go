package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's own Prometheus series; asynq's queue series are added beside them.
type metrics struct {
	sends   *prometheus.CounterVec
	latency prometheus.Histogram
	wait    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wabulk_sends_total",
			Help: "Job attempts by outcome (sent, retry, dead, requeued) and Kaleyra code.",
		}, []string{"outcome", "code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wabulk_kaleyra_request_seconds",
			Help:    "Duration of one Kaleyra API call, answer included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wabulk_ratelimit_wait_seconds",
			Help:    "Time a job waited for the shared per-sender rate limit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.sends, m.latency, m.wait)
	}
	return m
}
