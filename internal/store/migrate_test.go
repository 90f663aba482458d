package store

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/job"
)

// TestMigrateCutAfterTheCountsIsFinishedByTheNextRun: a migration that stopped after it copied
// the tasks and records and counted them in the lanes, before it deleted anything, is finished
// by the next run without counting a job twice; the run after that finds nothing.
func TestMigrateCutAfterTheCountsIsFinishedByTheNextRun(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	client := asynq.NewClientFromRedisClient(l.rdb)
	waiting := cancelTasks(t, "c", 1, 3)
	for _, tk := range waiting {
		if _, err := client.Enqueue(asynq.NewTask(job.TaskType, tk.Payload), asynq.Queue("whatsapp"), asynq.TaskID(tk.ID), asynq.MaxRetry(3)); err != nil {
			t.Fatal(err)
		}
	}
	sent := cancelTasks(t, "c", 4, 1)[0].ID // sent by an old worker; its task since expired
	scope := l.campaignScope("c")
	l.rdb.HSet(ctx, key(scope, "counts"), "enqueued", 4, "completed", 1, "retries", 2)
	l.rdb.HSet(ctx, key(scope, "sent"), sent, `{"id":"wamid.4"}`)
	l.rdb.SAdd(ctx, l.campaignsKey(), "c")

	// The cut run: steps 1 and 2, no deletion.
	m := l.newMigration(false)
	for _, s := range migStates {
		if err := m.copyTasks(ctx, s.state, s.list); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.copyRecords(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := m.count(ctx, "c", map[string]string{}); err != nil {
		t.Fatal(err)
	}

	rep, err := l.Migrate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tasks["pending"] != 3 || rep.Sent != 1 {
		t.Errorf("second run: %+v, want the same 3 tasks and 1 marker", rep)
	}
	c := l.mustCounts(t)
	if c.Enqueued != 4 || c.Completed != 1 || c.Retries != 2 || c.Pending != 3 || c.Cancelled != 0 {
		t.Errorf("counts = %+v, want 4 enqueued, 1 completed, 2 retries, 3 pending: nothing counted twice", c)
	}
	lane := l.LaneName("c", cancelSender)
	if prior, already, err := l.Begin(ctx, lane, sent); err != nil || !already || prior != `{"id":"wamid.4"}` {
		t.Errorf("the sent job in its lane: %q %v %v, want its marker", prior, already, err)
	}
	if n := l.rdb.Exists(ctx, key(lane, "migrated"), l.migLanesKey()).Val(); n != 0 {
		t.Errorf("%d markers of the migration left", n)
	}
	again, err := l.Migrate(ctx, false)
	if err != nil || !again.Empty() {
		t.Errorf("third run: %+v %v, want nothing to do", again, err)
	}
}
