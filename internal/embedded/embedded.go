// Package embedded runs an in-process Redis (miniredis) for one-shot runs such as
// `wabulk send --embedded-redis` and `wabulk demo`: nothing to install, and nothing survives the
// process — every job, counter and dead letter lives in this process's memory only.
//
// asynq needs the server's clock to follow real time: completed tasks and server heartbeats
// expire by TTL, and EXPIREAT/TIME must agree with the workers' clocks. miniredis only moves
// TTLs on FastForward unless ClockTTL is on; with ClockTTL and no fixed time, every command
// first advances TTLs by the wall-clock time elapsed since the last one. That is exact and needs
// no ticking goroutine (a FastForward loop would lag by up to its period and need stopping).
package embedded

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
)

// Redis is one in-process Redis server on a loopback port.
type Redis struct {
	m *miniredis.Miniredis
}

// Start starts an in-process Redis on a free 127.0.0.1 port. Close it when done.
func Start() (*Redis, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	return &Redis{m: m}, nil
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.m.Addr() }

// URL is the server's address in the form WABULK_REDIS_URL takes.
func (r *Redis) URL() string { return "redis://" + r.m.Addr() + "/0" }

// ConnOpt returns asynq's connection options for the server.
func (r *Redis) ConnOpt() asynq.RedisConnOpt { return asynq.RedisClientOpt{Addr: r.m.Addr()} }

// Close stops the server; everything in it is gone.
func (r *Redis) Close() { r.m.Close() }
