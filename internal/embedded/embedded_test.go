package embedded

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
)

// TestAsynqRunsOnEmbeddedRedis checks what wabulk needs of asynq on miniredis: enqueue with a
// TaskID, a retry that comes back after its delay, completion and the janitor's removal after
// the retention, key TTLs that run out in real time, queue stats (MEMORY USAGE), pause/unpause, and the ledger's Lua (cjson).
func TestAsynqRunsOnEmbeddedRedis(t *testing.T) {
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)

	var calls atomic.Int32
	srv := asynq.NewServer(r.ConnOpt(), asynq.Config{
		Concurrency:              2,
		Queues:                   map[string]int{"q": 1},
		DelayedTaskCheckInterval: 50 * time.Millisecond,
		TaskCheckInterval:        50 * time.Millisecond,
		JanitorInterval:          100 * time.Millisecond,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 100 * time.Millisecond },
		LogLevel:                 asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if calls.Add(1) == 1 {
			return errors.New("transient")
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	client := asynq.NewClient(r.ConnOpt())
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(r.ConnOpt())
	t.Cleanup(func() { insp.Close() })

	if _, err := client.Enqueue(asynq.NewTask("t", []byte("x")), asynq.Queue("q"), asynq.TaskID("one"),
		asynq.MaxRetry(3), asynq.Retention(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask("t", []byte("x")), asynq.Queue("q"), asynq.TaskID("one")); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("second enqueue with the same TaskID: got %v, want ErrTaskIDConflict", err)
	}
	testkit.Eventually(t, 5*time.Second, "the task to complete after one retry", func() bool {
		info, err := insp.GetQueueInfo("q")
		return err == nil && info.Completed == 1
	})
	if got := calls.Load(); got != 2 {
		t.Errorf("handler calls = %d, want 2 (one failure, one success)", got)
	}
	testkit.Eventually(t, 5*time.Second, "the completed task to expire after its retention", func() bool {
		_, err := insp.GetTaskInfo("q", "one")
		return errors.Is(err, asynq.ErrTaskNotFound)
	})

	if err := insp.PauseQueue("q"); err != nil {
		t.Fatal(err)
	}
	if info, err := insp.GetQueueInfo("q"); err != nil || !info.Paused {
		t.Fatalf("after pause: %+v, %v", info, err)
	}
	if err := insp.UnpauseQueue("q"); err != nil {
		t.Fatal(err)
	}

	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.Set(ctx, "ttl", "v", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "a key's TTL to run out in real time", func() bool {
		return rdb.Exists(ctx, "ttl").Val() == 0
	})
	l := store.New(rdb, "q", time.Hour)
	d := store.DeadLetter{TaskID: "c:1", Code: "E110", Time: time.Now().UTC()}
	d.Scope = l.LaneName("c", "")
	if err := l.Dead(ctx, d.Scope, d); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Undead(ctx, d); err != nil || !ok {
		t.Fatalf("undead: %v %v", ok, err)
	}
}
