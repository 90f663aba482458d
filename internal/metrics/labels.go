package metrics

import (
	"strconv"
	"strings"
	"sync"

	"github.com/wabulk/wabulk/internal/kaleyra"
)

// Other is the label value that stands for everything past a bound.
const Other = "other"

// MaxSenders is how many distinct sender label values one process exports; later senders are
// counted as Other. An account has a handful of business numbers, so this is never reached in
// normal use; it keeps a producer that names many bogus senders from growing the series.
const MaxSenders = 200

// Limit hands out label values up to a maximum number of distinct ones, then Other. Safe for
// concurrent use.
type Limit struct {
	max  int
	mu   sync.Mutex
	seen map[string]bool
}

// NewLimit returns a Limit of n distinct values.
func NewLimit(n int) *Limit { return &Limit{max: n, seen: map[string]bool{}} }

// Value returns v while it is one of the first n distinct values, else Other.
func (l *Limit) Value(v string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[v] {
		return v
	}
	if len(l.seen) >= l.max {
		return Other
	}
	l.seen[v] = true
	return v
}

// knownCodes are the codes a code label may hold as they are: Kaleyra's documented ones and
// wabulk's own (worker.CodeBadPayload, worker.CodeNoSender, the already-sent marker).
var knownCodes = map[string]bool{
	kaleyra.CodeLowBalance: true, kaleyra.CodeBadPayload: true, kaleyra.CodeAuth: true,
	kaleyra.CodeSender: true, kaleyra.CodeAccount: true, kaleyra.CodeInternal: true,
	kaleyra.CodeDailyLimit: true, "INVALID_PAYLOAD": true, "NO_SENDER": true, "resent_avoided": true,
	"invalid": true, "timeout": true, "network": true, "cancelled": true, "suppressed": true, "": true,
}

// MetaCode bounds the code label of a delivery status: Meta's error codes are numbers of up to
// six digits; anything else is Other.
func MetaCode(c string) string {
	if c == "" {
		return c
	}
	if len(c) > 6 || strings.Trim(c, "0123456789") != "" {
		return Other
	}
	return c
}

// Code bounds a code label: a documented Kaleyra code, one of wabulk's, "HTTP <status>" for a
// status 100–599, else Other. Kaleyra may answer any code; the log line and the dead letter keep
// it whole.
func Code(c string) string {
	if knownCodes[c] {
		return c
	}
	if s, ok := strings.CutPrefix(c, "HTTP "); ok {
		if n, err := strconv.Atoi(s); err == nil && n >= 100 && n <= 599 && len(s) == 3 {
			return c
		}
	}
	return Other
}

// Class is the answer class of a Kaleyra call: "2xx", "4xx", "5xx" (any status, by its
// hundreds), or "timeout" or "network" when no answer came.
func Class(status int, timeout bool) string {
	switch {
	case status >= 100 && status <= 599:
		return strconv.Itoa(status/100) + "xx"
	case timeout:
		return "timeout"
	default:
		return "network"
	}
}
