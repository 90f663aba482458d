package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/hibiken/asynqmon"
)

// newMonitor mounts asynqmon under /monitor. Payloads and results are JSON (a wabulk job, and
// Kaleyra's answer), shown indented so an operator reads fields rather than a byte dump.
func newMonitor(cfg Config) *asynqmon.HTTPHandler {
	return asynqmon.New(asynqmon.Options{
		RootPath:         strings.TrimSuffix(MonitorPath, "/"),
		RedisConnOpt:     cfg.Redis,
		ReadOnly:         !cfg.MonitorWrite,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(func(_ string, b []byte) string { return readable(b) }),
		ResultFormatter:  asynqmon.ResultFormatterFunc(func(_ string, b []byte) string { return readable(b) }),
	})
}

// readable indents JSON; anything else is shown as text when it is UTF-8, else as a note.
func readable(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") == nil {
		return out.String()
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return "(non-UTF-8 bytes)"
}

// monitorGuard answers 403 to a change through asynqmon's API when the monitor is read-only.
// asynqmon's own read-only mode answers 405, which tells a client its request was malformed
// rather than not allowed; 403 with a problem document says what to change (--monitor-write).
func (s *Server) monitorGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !s.cfg.MonitorWrite {
				writeProblem(w, newProblem(http.StatusForbidden, CodeMonitorReadOnly,
					"the monitor is read-only; start wabulk serve with --monitor-write to change the queue from it"))
				return
			}
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if q := monitorQueue(r.URL.Path); q != "" && rec.status < 300 {
			// A change through asynqmon (a lane resumed, a task run from the archive or the
			// retry set) may give a lane pending work that workers had set aside: announce it. A
			// lost message costs latency only (the workers' upkeep announces lanes with pending
			// work again).
			s.ledger.Wake(context.WithoutCancel(r.Context()), q)
		}
	})
}

// monitorQueue is the queue an asynqmon API path acts on (…/api/queues/<queue>[:action|/…]),
// empty when it names none.
func monitorQueue(path string) string {
	_, rest, ok := strings.Cut(path, "/api/queues/")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		if action := rest[i+1:]; action == "pause" || action == "resume" {
			rest = rest[:i]
		}
	}
	if q, err := url.PathUnescape(rest); err == nil {
		return q
	}
	return ""
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
