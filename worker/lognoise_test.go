package worker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// TestFirstAttemptDeadLetterIsNoAsynqWarning: a first-attempt E110 is dead-lettered by the
// handler (one "send" line, outcome dead, code E110); asynq's "Retry exhausted" for the same
// task is not logged as a warning beside it.
func TestFirstAttemptDeadLetterIsNoAsynqWarning(t *testing.T) {
	b := setup(t)
	to := "+919812345688"
	b.Sandbox.Script(to, "E110")
	id := b.enqueue("noise", to, 5)
	b.run(b.config())
	b.waitFor("the dead letter", 10*time.Second, b.done("noise", 1))
	b.waitFor("the archived task", 5*time.Second, func() bool { return b.taskInfo(id).State == asynq.TaskStateArchived })
	time.Sleep(100 * time.Millisecond) // asynq logs after it archives

	dead := 0
	for _, line := range strings.Split(b.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["msg"] == "send" && m["outcome"] == "dead" && m["code"] == "E110" {
			dead++
		}
		if msg, _ := m["msg"].(string); strings.Contains(msg, "Retry exhausted") && m["level"] != "debug" {
			t.Errorf("asynq's line at level %v: %s", m["level"], line)
		}
	}
	if dead != 1 {
		t.Errorf("%d send lines with outcome dead and code E110, want 1:\n%s", dead, b.logs.String())
	}
}
