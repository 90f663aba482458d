package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
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
		next.ServeHTTP(w, r)
	})
}
