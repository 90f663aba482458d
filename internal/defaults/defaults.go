// Package defaults is the one table of wabulk's defaults. The environment (internal/config), the
// Go API (producer, worker) and the Kaleyra client all read what an unset value means here, so a
// default changes in one place.
package defaults

import (
	"cmp"
	"time"
)

// The defaults of the settings a user can change (the environment variable in brackets).
const (
	RedisURL        = "redis://127.0.0.1:6379/0" // WABULK_REDIS_URL
	Queue           = "whatsapp"                 // WABULK_QUEUE
	Region          = "in"                       // KALEYRA_REGION
	Concurrency     = 50                         // WABULK_CONCURRENCY
	Rate            = 80.0                       // WABULK_RATE, messages per second per sender
	MaxRetry        = 8                          // WABULK_MAX_RETRY
	RetryBase       = 5 * time.Second            // WABULK_RETRY_BASE
	RetryMax        = 10 * time.Minute           // WABULK_RETRY_MAX
	HTTPTimeout     = 15 * time.Second           // KALEYRA_HTTP_TIMEOUT
	Retention       = 24 * time.Hour             // WABULK_RETENTION
	MetricsAddr     = ":9090"                    // WABULK_METRICS_ADDR
	LogLevel        = "info"                     // WABULK_LOG_LEVEL
	LogPII          = "masked"                   // WABULK_LOG_PII
	Addr            = ":8080"                    // WABULK_ADDR
	ShutdownTimeout = 30 * time.Second           // WABULK_SHUTDOWN_TIMEOUT
)

// The defaults of the settings only the Go API exposes.
const (
	// EnqueueConcurrency is how many enqueue calls a producer runs at once.
	EnqueueConcurrency = 16
	// KaleyraMaxConns is the idle connections the Kaleyra client keeps per host when the worker's
	// concurrency does not say.
	KaleyraMaxConns = 64
	// KaleyraUploadTimeout bounds one media upload, file and answer included (100 MB at 3 Mbit/s).
	KaleyraUploadTimeout = 5 * time.Minute
	// MediaCacheTTL is how long an uploaded media id is reused for the same file and sender:
	// below the 30 days Meta keeps uploaded media, so a cached id never outlives its media, with
	// five days for the campaign that takes it (and its retries) to finish.
	MediaCacheTTL = 25 * 24 * time.Hour
	// LaneInterval is how often a worker reads the live lanes.
	LaneInterval = time.Second
	// ReconcileInterval is how often one worker sweeps the live lanes (archives made without the
	// handler, missed announcements, due entries, backlogs).
	ReconcileInterval = time.Minute
)

// Set gives *v the default d when it is unset: zero, negative or empty.
func Set[T cmp.Ordered](v *T, d T) {
	var zero T
	if *v <= zero {
		*v = d
	}
}
