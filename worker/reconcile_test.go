package worker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// TestReconcilerCountsOnlyTheDeadLettersItAdds: five jobs the handler dead-letters (WA400) and
// one task an operator archived. The reconciler reads all six from asynq's archive, the last
// second's again on every pass, but records (and logs) only the operator's: its log lines add
// up to 1, where they counted every archived task read.
func TestReconcilerCountsOnlyTheDeadLettersItAdds(t *testing.T) {
	b := setup(t)
	var ids []string
	for i := range 5 {
		to := fmt.Sprintf("+91981234%04d", 5700+i)
		b.Sandbox.Script(to, "WA400")
		ids = append(ids, b.enqueue("rc", to, 3))
	}
	opID := b.enqueue("rc", "+919812345799", 3)
	if err := b.Insp.ArchiveTask(b.ledger.LaneName("rc", ""), opID); err != nil {
		t.Fatal(err)
	}
	cfg := b.config()
	cfg.ReconcileInterval = 50 * time.Millisecond
	b.run(cfg)
	b.waitFor("six dead letters", 10*time.Second, b.done("rc", 6))
	b.waitFor("the handler's dead letters archived", 5*time.Second, func() bool {
		for _, id := range ids {
			if b.taskInfo(id).State != asynq.TaskStateArchived {
				return false
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond) // passes enough to read the last second's archive again

	total, lines := 0, 0
	for _, line := range strings.Split(b.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "recorded dead letters archived outside the handler" {
			n, _ := m["count"].(float64)
			total += int(n)
			lines++
		}
	}
	if total != 1 {
		t.Errorf("reconciler logged %d dead letters recorded (%d lines), want 1: the operator's archive only", total, lines)
	}
	if c := b.counts("rc"); c.Dead != 6 || c.DeadCodes["WA400"] != 5 || c.DeadCodes[CodeArchived] != 1 {
		t.Errorf("counts %+v, want 5 WA400 and 1 %s", c, CodeArchived)
	}
}
