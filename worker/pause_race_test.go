package worker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
)

// TestConcurrentPauseOnCodesLogNoError: several jobs of one campaign meet a WABULK_PAUSE_ON code
// at the same moment; each pauses the queues, all but the first find them paused already. That
// race is harmless and must not be logged at error level (an operator's alert reads those).
func TestConcurrentPauseOnCodesLogNoError(t *testing.T) {
	b := setup(t)
	// The answers are held back so that every job is in flight before the first E110 comes.
	sb, err := sandbox.Start(sandbox.Config{SID: testkit.SID, APIKey: testkit.APIKey, Senders: []string{testkit.Sender},
		Balance: 0, Latency: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	const jobs = 6
	for i := range jobs {
		b.enqueue("race", fmt.Sprintf("+91984%07d", i), 3)
	}
	cfg := b.config()
	cfg.Kaleyra.BaseURL = sb.URL
	cfg.Concurrency = 8
	cfg.PauseOn = []string{"E110"}
	stop := b.run(cfg)
	b.waitFor("every job to meet E110", 10*time.Second, func() bool { return len(sb.Calls()) >= jobs })
	lane := b.ledger.LaneName("race", "")
	b.waitFor("the lane to pause", 10*time.Second, func() bool {
		qi, err := b.Insp.GetQueueInfo(lane)
		return err == nil && qi.Paused
	})
	// Let the last answers be handled before reading the log.
	b.waitFor("every job back in the lane", 10*time.Second, func() bool {
		qi, err := b.Insp.GetQueueInfo(lane)
		return err == nil && qi.Active == 0
	})
	stop()
	pauses := 0
	for _, line := range strings.Split(b.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["level"] == "error" {
			t.Errorf("error-level log line: %s", line)
		}
		if m["outcome"] == nil && strings.Contains(fmt.Sprint(m["msg"]), "queues paused") {
			pauses++
		}
	}
	if pauses < 2 {
		t.Errorf("%d jobs reported pausing the queues, want several (the race did not happen)", pauses)
	}
	if c := b.counts("race"); c.Dead != 0 {
		t.Errorf("dead = %d, want 0 while paused", c.Dead)
	}
}
