package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/job"
)

// Config is everything a worker needs. Build it with ConfigFrom, or fill it by hand and let Run
// validate it.
type Config struct {
	// Redis is where the queue lives. Required.
	Redis asynq.RedisConnOpt
	// Queue is the asynq queue to serve. Default "whatsapp".
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
	// Kaleyra configures the API client (SID, key, region or base URL, timeout).
	Kaleyra kaleyra.Config
	// MetricsAddr is where /metrics, /healthz and /readyz are served; empty: not served.
	MetricsAddr string
	// PII says how phone numbers appear in logs. Default masked.
	PII logging.Masker

	// PollInterval is how often an idle worker looks for new jobs. Default 200ms: enqueue-to-send
	// latency is bounded by it (asynq polls; it does not block on the list).
	PollInterval time.Duration
	// ReconcileInterval is how often one worker looks for tasks asynq archived without the
	// handler (a worker killed on a job's last attempt, an archive from asynqmon) and records
	// their dead letters. Default 30s.
	ReconcileInterval time.Duration
	// LaneInterval is how often a worker reads the live lanes, to serve new ones and stop
	// serving drained ones. Default 1s.
	LaneInterval time.Duration
}

// ConfigFrom turns the environment's configuration into a worker Config and checks that a
// worker can run with it (SID, key, Redis URL).
func ConfigFrom(c config.Config) (Config, error) {
	if err := errors.Join(c.Check(), c.RequireKaleyra()); err != nil {
		return Config{}, err
	}
	redis, err := c.RedisConnOpt()
	if err != nil {
		return Config{}, err
	}
	from := c.From
	if from != "" {
		if from, err = job.NormalizeNumber(from); err != nil {
			return Config{}, fmt.Errorf("%s: %w", config.EnvFrom, err)
		}
	}
	return Config{
		Redis:           redis,
		Queue:           c.Queue,
		Concurrency:     c.Concurrency,
		Rate:            c.Rate,
		Burst:           c.Burst,
		RetryBase:       c.RetryBase,
		RetryMax:        c.RetryMax,
		ShutdownTimeout: c.ShutdownTimeout,
		Retention:       c.Retention,
		PauseOn:         c.PauseOn,
		From:            from,
		MetricsAddr:     c.MetricsAddr,
		PII:             logging.NewMasker(c.LogPII),
		Kaleyra: kaleyra.Config{SID: c.SID, APIKey: c.APIKey.Reveal(), Region: c.Region, BaseURL: c.BaseURL,
			Timeout: c.HTTPTimeout, MaxConns: c.Concurrency},
	}, nil
}

func (c *Config) withDefaults() {
	d := config.Defaults()
	if c.Queue == "" {
		c.Queue = d.Queue
	}
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Rate <= 0 {
		c.Rate = d.Rate
	}
	if c.Burst <= 0 {
		c.Burst = config.DefaultBurst(c.Rate)
	}
	if c.RetryBase <= 0 {
		c.RetryBase = d.RetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = d.RetryMax
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	if c.Retention <= 0 {
		c.Retention = d.Retention
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.LaneInterval <= 0 {
		c.LaneInterval = time.Second
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 30 * time.Second
	}
	if c.Kaleyra.MaxConns <= 0 {
		c.Kaleyra.MaxConns = c.Concurrency
	}
}

func (c *Config) validate() error {
	if c.Redis == nil {
		return errors.New("worker: Redis connection is required (" + config.EnvRedisURL + ")")
	}
	if c.RetryMax < c.RetryBase {
		return fmt.Errorf("%s must not be below %s", config.EnvRetryMax, config.EnvRetryBase)
	}
	return nil
}
