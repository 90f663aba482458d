package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/ratelimit"
)

// Config is everything a worker needs. The zero value of each field means its default; Run
// checks the rest.
type Config struct {
	// Redis is where the queue lives. Required.
	Redis asynq.RedisConnOpt
	// Queue is the namespace of the queues to serve (WABULK_QUEUE). Default "whatsapp".
	Queue string
	// Concurrency is how many jobs run at once. Default 50.
	Concurrency int
	// Rate is messages per second per sender, shared by every worker on the same Redis. Default 80.
	Rate float64
	// Burst is how many tokens the shared limiter hands out at once. Default ceil(Rate/10).
	Burst int
	// RetryBase and RetryMax bound the backoff of transient failures (full jitter). Default 5s, 10m.
	RetryBase, RetryMax time.Duration
	// ShutdownTimeout is how long in-flight jobs may finish after a stop. Default 30s.
	ShutdownTimeout time.Duration
	// Retention is how long sent markers live (the dedupe window). Default 24h.
	Retention time.Duration
	// PauseOn are Kaleyra codes that pause the queue instead of dead-lettering job by job.
	// Default none.
	PauseOn []string
	// From is the sender for jobs that name none (KALEYRA_FROM). Default none.
	From string
	// Kaleyra is the account jobs are sent through. Required.
	Kaleyra KaleyraConfig
	// MetricsAddr is where /metrics, /healthz and /readyz are served; empty: not served.
	MetricsAddr string
	// LogPhoneNumbers writes phone numbers in full in logs (WABULK_LOG_PII=full). Default false:
	// masked.
	LogPhoneNumbers bool

	// ReconcileInterval is how often one worker sweeps the live lanes (store.Ledger.Sweep): it
	// records the dead letters of tasks archived without the handler (an archive from
	// asynqmon), announces lanes with pending work again, repairs the due index and reads each
	// lane's backlog for retirement. Default 1m: one script per live lane per pass is most of
	// an idle lane's Redis cost. A task whose worker died on its last attempt gets its dead
	// letter when it is taken back.
	ReconcileInterval time.Duration
	// LaneInterval paces the lane upkeep: scheduled campaigns are started every LaneInterval, the
	// live lanes are read again every 5 × LaneInterval (new work is announced at once; this read
	// is for announcements lost with a connection) and drained lanes are retired by one worker
	// every 5 × LaneInterval. Default 1s.
	LaneInterval time.Duration
}

// KaleyraConfig is the Kaleyra account the worker sends through.
type KaleyraConfig struct {
	// SID is the account SID (KALEYRA_SID). Required.
	SID string
	// APIKey is the API key (KALEYRA_API_KEY). Required; it never reaches a log or an error.
	APIKey string
	// Region picks Kaleyra's documented domain: in, sg, eu or na (KALEYRA_REGION). Default "in".
	Region string
	// BaseURL replaces https://<region's domain>, e.g. for the sandbox (KALEYRA_BASE_URL).
	// Default unset.
	BaseURL string
	// Timeout bounds one call, answer included (KALEYRA_HTTP_TIMEOUT). Default 15s.
	Timeout time.Duration
	// CallbackProfileID, when set, goes with every message as callback_profile_id
	// (KALEYRA_CALLBACK_PROFILE_ID). Default unset.
	CallbackProfileID string
}

func (c *Config) withDefaults() {
	if c.Queue == "" {
		c.Queue = defaults.Queue
	}
	if c.Concurrency <= 0 {
		c.Concurrency = defaults.Concurrency
	}
	if c.Rate <= 0 {
		c.Rate = defaults.Rate
	}
	if c.Burst <= 0 {
		c.Burst = ratelimit.DefaultBurst(c.Rate)
	}
	if c.RetryBase <= 0 {
		c.RetryBase = defaults.RetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = defaults.RetryMax
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = defaults.ShutdownTimeout
	}
	if c.Retention <= 0 {
		c.Retention = defaults.Retention
	}
	if c.LaneInterval <= 0 {
		c.LaneInterval = defaults.LaneInterval
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = defaults.ReconcileInterval
	}
}

// kaleyra is the client's configuration: one idle connection per job that may run at once.
func (c *Config) kaleyra() kaleyra.Config {
	k := c.Kaleyra
	return kaleyra.Config{SID: k.SID, APIKey: k.APIKey, Region: k.Region, BaseURL: k.BaseURL, CallbackProfileID: k.CallbackProfileID,
		Timeout: k.Timeout, MaxConns: c.Concurrency}
}

// pii is how the worker writes phone numbers in logs.
func (c *Config) pii() logging.Masker { return logging.Masker{Full: c.LogPhoneNumbers} }

func (c *Config) validate() error {
	if c.Redis == nil {
		return errors.New("worker: Redis connection is required (" + config.EnvRedisURL + ")")
	}
	if c.RetryMax < c.RetryBase {
		return fmt.Errorf("%s must not be below %s", config.EnvRetryMax, config.EnvRetryBase)
	}
	return nil
}
