package testkit

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
)

// recorder is a testing.TB that records a Fatal instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(args ...any) {
	r.failed = args[0].(string)
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	d := Eventually(t, time.Second, "three polls", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 || d < 2*pollEvery {
		t.Fatalf("polled %d times in %v", n.Load(), d)
	}
}

func TestEventuallySaysWhatItWaitedForAndTheStateItSaw(t *testing.T) {
	r := &recorder{TB: t}
	Eventually(r, 30*time.Millisecond, "the queue to drain", func() bool { return false },
		func() string { return "pending 7" })
	if !strings.Contains(r.failed, "waiting for the queue to drain") || !strings.Contains(r.failed, "pending 7") {
		t.Fatalf("failure message %q", r.failed)
	}
}

func TestSandboxServesTheTestAccount(t *testing.T) {
	sb := Sandbox(t, sandbox.Config{Balance: -1})
	if sb.URL == "" {
		t.Fatal("no URL")
	}
}
