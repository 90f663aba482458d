package worker

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a worker that stops must
// leave nothing running (asynq's server parts, the metrics listener, HTTP connections to a
// Kaleyra that hung, reset or trickled). No goroutine is ignored.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
