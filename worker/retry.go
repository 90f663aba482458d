package worker

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/kaleyra"
)

// errNotFailure marks errors that send a job back to the queue without using up its retry
// budget: a rate-limit wait cut short by a stop, a queue paused on an account-level code,
// Redis unreachable for the ledger. asynq asks IsFailure and does not count them.
var errNotFailure = errors.New("not a failure")

// isFailure is asynq's IsFailure: everything but errNotFailure counts against the budget.
func isFailure(err error) bool { return !errors.Is(err, errNotFailure) }

// backoff is exponential with full jitter: a uniform delay in [0, min(max, base·2^n)], so
// retries of a campaign that failed together do not come back together. A Retry-After from
// Kaleyra (429/503) is a floor. Jobs that were not failures come back after a short pause.
func backoff(base, maxDelay time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		if !isFailure(err) {
			return time.Second + rand.N(time.Second)
		}
		ceil := maxDelay
		if n < 62 && base<<n > 0 && base<<n < maxDelay {
			ceil = base << n
		}
		d := rand.N(ceil + 1)
		var ke *kaleyra.Error
		if errors.As(err, &ke) && ke.RetryAfter > d {
			d = min(ke.RetryAfter, maxDelay)
		}
		return d
	}
}
