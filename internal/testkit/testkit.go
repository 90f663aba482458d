// Package testkit is what every wabulk test shares: one Kaleyra test account, the sandbox started
// with it, and a polling helper that says what it waited for when it gives up. Tests get their
// Redis from package redistest.
package testkit

import (
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
)

// The test account. The key is long and distinctive so a test can search any output for it.
const (
	SID     = "HXAP16TEST97IN"
	APIKey  = "Kf4u1tS-5ecret-0123456789abcdef"
	Sender  = "+919000000001"
	Sender2 = "+919000000002"
)

// Sandbox starts the fake Kaleyra for the test account (SID, APIKey; senders Sender and Sender2
// unless cfg names others) and closes it when the test ends.
func Sandbox(t testing.TB, cfg sandbox.Config) *sandbox.Server {
	t.Helper()
	if cfg.SID == "" {
		cfg.SID = SID
	}
	if cfg.APIKey == "" {
		cfg.APIKey = APIKey
	}
	if len(cfg.Senders) == 0 {
		cfg.Senders = []string{Sender, Sender2}
	}
	sb, err := sandbox.Start(cfg)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// pollEvery is how often Eventually checks its condition.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it holds and returns how long that took. When within passes
// first, the test fails with what it waited for and, if describe is given, the state it last
// saw.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool, describe ...func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			msg := fmt.Sprintf("timed out after %v waiting for %s", within, what)
			for _, d := range describe {
				msg += "; " + d()
			}
			t.Fatal(msg)
			return time.Since(start) // t is not a *testing.T that stops the goroutine
		}
		time.Sleep(pollEvery)
	}
	return time.Since(start)
}

// World is a test's running system: a real redis-server, clients of it, and the sandbox.
type World struct {
	Redis   *redistest.Server
	RDB     *redis.Client
	Sandbox *sandbox.Server
	Insp    *asynq.Inspector
}

// NewWorld starts a redis-server (with ro) and the sandbox for the test account (with sc, see
// Sandbox), all stopped when the test ends.
func NewWorld(t testing.TB, ro redistest.Options, sc sandbox.Config) *World {
	t.Helper()
	rs := redistest.StartWith(t, ro)
	w := &World{Redis: rs, RDB: rs.Client(t), Sandbox: Sandbox(t, sc), Insp: asynq.NewInspector(rs.ConnOpt(t))}
	t.Cleanup(func() { w.Insp.Close() })
	return w
}
