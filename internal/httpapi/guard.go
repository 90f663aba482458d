package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"strings"
)

// hostAllowed reports whether a request's Host may reach an API served without tokens: only a
// loopback name (localhost, 127.0.0.0/8, ::1, with any port). The listener being on loopback is
// not enough: DNS rebinding points an attacker's name at 127.0.0.1, and a page of that name
// then talks to the API from the operator's own browser, with the attacker's name as Host.
func hostAllowed(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1] // "[::1]" without a port
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// hostGuard answers 403 to a request whose Host is not a loopback name when the API has no
// tokens (--insecure-no-auth); with tokens, a rebound name gains nothing without one.
func (s *Server) hostGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.tokens) == 0 && !hostAllowed(r.Host) {
			writeProblem(w, newProblem(http.StatusForbidden, CodeHostNotAllowed,
				"without WABULK_API_TOKENS (--insecure-no-auth) only a loopback Host is served: localhost, 127.0.0.1 or [::1]"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isLarge reports whether a request's body may be large: declared over LargeBodyBytes, or of
// unknown length (chunked: a streamed campaign). A declared length is enforced by net/http, so
// a small one cannot turn out large.
func (s *Server) isLarge(r *http.Request) bool {
	return r.ContentLength < 0 || r.ContentLength > s.cfg.LargeBodyBytes
}

// limitLarge lets at most MaxLargeRequests large requests run at once and answers 429 with
// Retry-After to the others before reading their bodies: each holds up to MaxBodyBytes of JSON
// and its decoded recipients and outcomes (about 13 times the body at the peak; a media_file part
// goes to disk), so their number in flight is what bounds the process's memory.
func (s *Server) limitLarge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.isLarge(r) {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case s.large <- struct{}{}:
			defer func() { <-s.large }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
			// The body is not read: net/http closes the connection after the answer rather
			// than read more than 256 KiB of it.
			writeProblem(w, newProblem(http.StatusTooManyRequests, CodeTooManyLargeRequests,
				"too many large requests in flight (--max-large-requests "+strconv.Itoa(s.cfg.MaxLargeRequests)+
					"); nothing was enqueued: retry after "+strconv.Itoa(retryAfterSeconds)+" s"))
		}
	})
}

// retryAfterSeconds is the Retry-After of a 429: about the time a 16 MiB campaign takes.
const retryAfterSeconds = 2

// crossOrigin refuses a change through /monitor/ that a page of another origin made the
// browser send. The browser adds the cached Basic-auth login to a cross-site form post (and
// without tokens there is no login at all), so authentication does not tell the operator's
// clicks from a forged request; Sec-Fetch-Site (or, in older browsers, Origin against Host)
// does. asynqmon's UI sends neither a token nor a custom header of its own, only same-origin
// fetches, which pass; scripts such as curl send neither header and pass too.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusForbidden, CodeCrossOrigin,
			"a change through /monitor/ must come from the monitor's own page: this request came from another origin (Sec-Fetch-Site or Origin)"))
	}))
	return p.Handler(next)
}
