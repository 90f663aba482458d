// Package probe serves the endpoints every long-running wabulk process exposes to its platform:
// /healthz (the process answers), /readyz (Redis answers, so the process can do its work) and
// /metrics (Prometheus). The worker and `wabulk serve` both mount it, so a probe means the same
// thing on either.
package probe

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// ReadyTimeout bounds the Redis ping behind /readyz: a probe that hangs is worse than one that
// fails, since the platform's own probe timeout would then hide the reason.
const ReadyTimeout = time.Second

// Paths of the probe endpoints, for callers that list or exempt them (auth, route tables).
const (
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	MetricsPath = "/metrics"
)

// Register adds GET /healthz, GET /readyz and GET /metrics to mux. metrics, when not nil, wraps
// the /metrics handler (serve puts its bearer-token check there); /healthz and /readyz stay
// open because kubelets and load balancers probe them without credentials.
func Register(mux *http.ServeMux, g prometheus.Gatherer, rdb redis.UniversalClient, metrics func(http.Handler) http.Handler) {
	mux.HandleFunc("GET "+HealthPath, Health)
	mux.Handle("GET "+ReadyPath, Ready(rdb))
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	if metrics != nil {
		h = metrics(h)
	}
	mux.Handle("GET "+MetricsPath, h)
}

// Handler is a mux with only the probe endpoints, for processes (the worker) that serve nothing else.
func Handler(g prometheus.Gatherer, rdb redis.UniversalClient) http.Handler {
	mux := http.NewServeMux()
	Register(mux, g, rdb, nil)
	return mux
}

// Health answers 200 as long as the process serves HTTP at all.
func Health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// Ready answers 200 when Redis answers a PING within ReadyTimeout and 503 otherwise: without
// Redis neither the worker nor the API can do anything, so traffic should go elsewhere.
func Ready(rdb redis.UniversalClient) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := rdb.Ping(ctx).Err(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("redis unreachable\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
}
