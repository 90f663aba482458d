// Package worker runs wabulk's workers: an asynq server on the campaign queue whose handler
// waits for the sender's turn under the rate limit all workers share, calls Kaleyra, and
// completes, retries or dead-letters the job per the table of Kaleyra's answers (docs/guarantees.md), logging one line per attempt.
//
// Other Go programs can run a worker in process with Run; `wabulk worker` is Run with the
// configuration read from the environment.
package worker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/probe"
	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/store"
)

// Run serves cfg.Queue until ctx ends, then stops taking jobs, lets in-flight ones finish for
// up to cfg.ShutdownTimeout (the rest go back to the queue) and returns nil. It returns an
// error at once when the configuration is invalid or Redis does not answer.
func Run(ctx context.Context, cfg Config, log *zap.Logger) error {
	cfg.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	client, err := kaleyra.New(cfg.kaleyra())
	if err != nil {
		return err
	}
	rdb, err := config.RedisClient(cfg.Redis)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("worker: Redis is unreachable: %w", err)
	}
	limiter, err := ratelimit.New(rdb, ratelimit.Config{Rate: cfg.Rate, Burst: cfg.Burst,
		// Per-sender overrides (`wabulk sender rate`), read about once a second while sending.
		Rates: store.New(rdb, cfg.Queue, cfg.Retention).SyncSenderRates})
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log, rdb, client, limiter)
}

// serve runs the dispatcher and the upkeep with the given sender and limiter (tests pass their own).
func serve(ctx context.Context, cfg Config, log *zap.Logger, rdb redis.UniversalClient, sender messageSender, limiter rateLimiter) error {
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	reg := prometheus.NewRegistry()
	metrics.RegisterProcess(reg, metrics.RoleWorker, rdb)
	h := &handler{
		from:    cfg.From,
		pauseOn: cfg.PauseOn,
		sender:  sender,
		ledger:  store.New(rdb, cfg.Queue, cfg.Retention),
		pauser:  inspector,
		log:     log,
		pii:     cfg.pii(),
		metrics: newMetrics(reg, cfg.PauseOn),
	}
	// Sends per sender for `wabulk sender ls`: counted in memory, written once a second.
	h.sendCount = h.ledger.NewSendCounter()
	countCtx, stopCount := context.WithCancel(context.Background())
	counted := make(chan struct{})
	go func() { h.sendCount.Run(countCtx); close(counted) }()
	defer func() { stopCount(); <-counted }()
	// Every job's ledger writes (Begin, Sent) share round trips with the other jobs in flight.
	stopBatch := h.ledger.Batch(cfg.Concurrency)
	defer stopBatch()
	// The lanes are served by the dispatcher.
	d := newDispatcher(cfg, log, h, limiter)
	h.lanes = d.liveLanes
	rc := &reconciler{insp: inspector, ledger: h.ledger, log: log}
	sup := &supervisor{log: log, ledger: h.ledger, insp: inspector, liveLanes: d.liveLanes, reconcile: rc.lanesPass,
		sweepEvery: cfg.ReconcileInterval}
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	served := make(chan struct{})
	go func() { d.serve(runCtx); close(served) }()
	upkept := make(chan struct{})
	go func() {
		sup.startDue(runCtx)
		go every(runCtx, cfg.LaneInterval, sup.startDue)
		sup.maintain(runCtx, 5*cfg.LaneInterval)
		close(upkept)
	}()
	log.Info("worker started", zap.String("queue", cfg.Queue), zap.Int("concurrency", cfg.Concurrency),
		zap.Float64("rate", cfg.Rate), zap.Int("burst", cfg.Burst), zap.Duration("retry_base", cfg.RetryBase),
		zap.Duration("retry_max", cfg.RetryMax), zap.Duration("shutdown_timeout", cfg.ShutdownTimeout),
		zap.String("default_from", cfg.From), zap.Strings("pause_on", cfg.PauseOn),
		zap.String("kaleyra_sid", cfg.Kaleyra.SID), zap.String("kaleyra_api_key", "[redacted]"),
		zap.String("kaleyra_region", cfg.Kaleyra.Region), zap.String("kaleyra_base_url", cfg.Kaleyra.BaseURL),
		zap.String("metrics_addr", cfg.MetricsAddr))

	var hs *http.Server
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			stopRun()
			<-served
			<-upkept
			return fmt.Errorf("worker: WABULK_METRICS_ADDR: %w", err)
		}
		hs = &http.Server{Handler: probe.Handler(reg, rdb), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ln)
		// Only a process whose /metrics can be scraped contends to export the namespace's lanes.
		exp := metrics.NewExporter(h.ledger)
		reg.MustRegister(exp)
		expCtx, stopExp := context.WithCancel(context.Background())
		exported := make(chan struct{})
		go func() { exp.Run(expCtx); close(exported) }()
		defer func() { stopExp(); <-exported }()
	}

	<-ctx.Done()
	log.Info("worker stopping: finishing in-flight jobs", zap.Duration("timeout", cfg.ShutdownTimeout))
	stopRun()
	<-served
	<-upkept
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		hs.Shutdown(sctx)
		cancel()
	}
	log.Info("worker stopped")
	return nil
}
