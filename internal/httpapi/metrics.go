package httpapi

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/metrics"
)

// httpMetrics are the API's request series, labelled by route pattern (not path: an id in the
// path would make a series per campaign).
type httpMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	recipients *prometheus.CounterVec
	callbacks  *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests:   metrics.HTTPRequests.CounterVec(),
		duration:   metrics.HTTPDuration.HistogramVec(prometheus.ExponentialBuckets(0.001, 4, 10)),
		recipients: metrics.APIRecipients.CounterVec(),
		callbacks:  metrics.CallbackStatuses.CounterVec(),
	}
	// Exported from the start, so a rate over it is 0 rather than absent before the first callback.
	m.callbacks.WithLabelValues("unmatched", "")
	reg.MustRegister(m.requests, m.duration, m.recipients, m.callbacks)
	return m
}

// statusWriter remembers the status code; Unwrap lets http.ResponseController reach the
// connection beneath (deadlines, flushing).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

// instrument counts and times every request, and turns a panic into a 500 problem whose details
// go to the log, never to the client.
func (s *Server) instrument(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", zap.String("method", r.Method), zap.String("route", r.Pattern),
					zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
				if sw.status == 0 {
					writeProblem(sw, newProblem(http.StatusInternalServerError, CodeInternal, "an internal error; the server log has the details"))
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			method := r.Method
			if !knownMethods[method] {
				method = "other"
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(sw.status)).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
			if s.observe != nil {
				s.observe(r.Method, r.Pattern, sw.status)
			}
		}()
		mux.ServeHTTP(sw, r)
	})
}
