// Package ops is the operator's view of a wabulk queue: how far each campaign is (status), what
// failed and why (dead letters), putting failures right (redrive), holding and releasing the
// queue (pause, resume) and one campaign (pause, resume, cancel), and the senders' rates.
//
// Queue counts are read from asynq's keys (one Lua call per queue, pipelined); campaign counts
// come from the ledger's per-lane counters, pipelined over the campaigns shown, so nothing here
// scans every task in Redis. The views of the namespace (Status, ListCampaigns, Queues) read the
// active campaigns and count the finished ones (store's campaign index), so their cost follows
// the campaigns running, not the thousands kept for the retention; finished ones are listed on
// request, newest first, up to a limit.
package ops

import (
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/producer"
)

// Config says which queue to operate on and how redriven jobs are enqueued.
type Config struct {
	// Redis is where the queue lives. Required.
	Redis asynq.RedisConnOpt
	// Queue is the asynq queue. Default "whatsapp".
	Queue string
	// MaxRetry is the retry budget a redriven job starts with, as producer.Config reads it.
	// Default 8; negative means none.
	MaxRetry int
	// Retention is how long completed jobs and sent markers stay (the dedupe window). Default 24h.
	Retention time.Duration
	// PII says how recipients are shown. Default masked.
	PII logging.Masker
}

func (c *Config) withDefaults() {
	d := config.Defaults()
	if c.Queue == "" {
		c.Queue = d.Queue
	}
	if c.Retention <= 0 {
		c.Retention = d.Retention
	}
}

// Ops operates on one queue. It holds Redis connections: Close it.
type Ops struct {
	cfg      Config
	rdb      redis.UniversalClient
	insp     *asynq.Inspector
	producer *producer.Producer
	ledger   *store.Ledger
}

// New connects to the queue's Redis. It does not talk to Redis yet.
func New(cfg Config) (*Ops, error) {
	if cfg.Redis == nil {
		return nil, errors.New("ops: Redis connection is required (" + config.EnvRedisURL + ")")
	}
	cfg.withDefaults()
	rdb, err := config.RedisClient(cfg.Redis)
	if err != nil {
		return nil, fmt.Errorf("ops: %w", err)
	}
	prod, err := producer.NewFromClient(rdb,
		producer.Config{Queue: cfg.Queue, MaxRetry: cfg.MaxRetry, Retention: cfg.Retention})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &Ops{
		cfg:      cfg,
		rdb:      rdb,
		insp:     asynq.NewInspectorFromRedisClient(rdb),
		producer: prod,
		ledger:   store.New(rdb, cfg.Queue, cfg.Retention),
	}, nil
}

// Queue is the queue this Ops operates on.
func (o *Ops) Queue() string { return o.cfg.Queue }

// Close releases the Redis connections.
func (o *Ops) Close() error { return o.rdb.Close() }
