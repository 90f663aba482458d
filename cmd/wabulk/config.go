package main

import (
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/httpapi"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

// The environment's configuration (internal/config) turned into each package's Config. The
// packages themselves never read the environment: another Go program fills their Config by hand.

// producerConfig is the producer part: WABULK_QUEUE, WABULK_MAX_RETRY (0 there means no retries),
// WABULK_RETENTION and KALEYRA_FROM.
func producerConfig(c config.Config) producer.Config {
	maxRetry := c.MaxRetry
	if maxRetry == 0 {
		maxRetry = -1 // producer.Config reads 0 as "default"; the variable's 0 means none
	}
	return producer.Config{Queue: c.Queue, MaxRetry: maxRetry, Retention: c.Retention, DefaultFrom: c.From}
}

// workerConfig is a worker's configuration, checked for what a worker cannot run without (SID,
// key, Redis URL).
func workerConfig(c config.Config) (worker.Config, error) {
	if err := errors.Join(c.Check(), c.RequireKaleyra()); err != nil {
		return worker.Config{}, err
	}
	redis, err := c.RedisConnOpt()
	if err != nil {
		return worker.Config{}, err
	}
	from := c.From
	if from != "" {
		if from, err = job.NormalizeNumber(from); err != nil {
			return worker.Config{}, fmt.Errorf("%s: %w", config.EnvFrom, err)
		}
	}
	return worker.Config{
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
		LogPhoneNumbers: logging.NewMasker(c.LogPII).Full,
		Kaleyra: worker.KaleyraConfig{SID: c.SID, APIKey: c.APIKey.Reveal(), Region: c.Region, BaseURL: c.BaseURL,
			Timeout: c.HTTPTimeout, CallbackProfileID: c.CallbackProfileID},
	}, nil
}

// redisOpt checks the configuration every command shares and returns its Redis connection.
func redisOpt(c config.Config) (asynq.RedisConnOpt, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	return c.RedisConnOpt()
}

// opsConfig is the operator commands' configuration.
func opsConfig(c config.Config) (ops.Config, error) {
	opt, err := redisOpt(c)
	if err != nil {
		return ops.Config{}, err
	}
	pc := producerConfig(c)
	return ops.Config{Redis: opt, Queue: pc.Queue, MaxRetry: pc.MaxRetry, Retention: pc.Retention,
		PII: logging.NewMasker(c.LogPII)}, nil
}

// apiConfig is `wabulk serve`'s configuration.
func apiConfig(c config.Config) (httpapi.Config, error) {
	opt, err := redisOpt(c)
	if err != nil {
		return httpapi.Config{}, err
	}
	cfg := httpapi.Config{Redis: opt, Producer: producerConfig(c),
		PII: logging.NewMasker(c.LogPII), Tokens: c.APITokens, ShutdownTimeout: c.ShutdownTimeout,
		SuppressOn: c.SuppressOn}
	// With a Kaleyra account, a campaign may come with a media_file to upload; without one the
	// API still enqueues, and answers such a campaign 501.
	if c.SID != "" && c.APIKey != "" {
		if cfg.Kaleyra, err = kaleyraConfig(c); err != nil {
			return httpapi.Config{}, err
		}
	}
	return cfg, nil
}
