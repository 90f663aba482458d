package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/redistest"
)

// These tests hold this package's knowledge of asynq's private Redis layout (asynq.go,
// Backlog, CleanUp) to what asynq itself writes and reads: if a new asynq changes the layout,
// they fail here, next to the code that would need to follow. The producer's tests hold whole
// campaigns to it as well (producer/asynqtask_test.go).

func TestEnqueuerWritesTheBytesAsynqClientWrites(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxRetry  int
		retention time.Duration
	}{
		{"eight retries, a day", 8, 24 * time.Hour},
		{"no retries, fractions of a second", 0, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			ctx := context.Background()
			const queue, id = "ns:c:919000000001", "c:919000000001:919812345678"
			payload := []byte(`{"v":1,"to":"+919812345678"}`)
			client := asynq.NewClient(srv.ConnOpt(t))
			t.Cleanup(func() { client.Close() })
			if _, err := client.Enqueue(asynq.NewTask("kaleyra:whatsapp:media", payload), asynq.Queue(queue),
				asynq.TaskID(id), asynq.MaxRetry(tc.maxRetry), asynq.Retention(tc.retention)); err != nil {
				t.Fatal(err)
			}
			want, err := rdb.HGet(ctx, TaskKey(queue, id), "msg").Bytes()
			if err != nil {
				t.Fatalf("asynq's task is not at TaskKey: %v", err)
			}
			if ids, _ := rdb.LRange(ctx, PendingKey(queue), 0, -1).Result(); !slices.Equal(ids, []string{id}) {
				t.Fatalf("asynq's pending list at PendingKey holds %v", ids)
			}
			rdb.FlushDB(ctx)

			l := New(rdb, "ns", tc.retention)
			added, live, err := l.Enqueuer("kaleyra:whatsapp:media", tc.maxRetry).Enqueue(ctx, queue, []Task{{ID: id, Payload: payload}}, true)
			if err != nil || !slices.Equal(added, []bool{true}) || live {
				t.Fatalf("Enqueue: %v live=%v %v; want added, not live (never registered)", added, live, err)
			}
			got, err := rdb.HGet(ctx, TaskKey(queue, id), "msg").Bytes()
			if err != nil || string(got) != string(want) {
				t.Fatalf("msg\n got %x (%v)\nwant %x", got, err, want)
			}
			insp := asynq.NewInspector(srv.ConnOpt(t))
			t.Cleanup(func() { insp.Close() })
			info, err := insp.GetTaskInfo(queue, id)
			if err != nil || info.State != asynq.TaskStatePending || info.MaxRetry != tc.maxRetry || info.Retention != tc.retention.Truncate(time.Second) { // asynq keeps whole seconds
				t.Fatalf("asynq reads %+v, %v", info, err)
			}
			if qs, _ := insp.Queues(); !slices.Contains(qs, queue) {
				t.Fatalf("asynq's queue list %v misses %s", qs, queue)
			}
			// Archived by asynq, found at ArchivedKey; and Backlog counts what asynq holds.
			if n, err := l.Backlog(ctx, queue); err != nil || n != 1 {
				t.Fatalf("Backlog = %d, %v; want 1 pending", n, err)
			}
			if err := insp.ArchiveTask(queue, id); err != nil {
				t.Fatal(err)
			}
			if _, err := rdb.ZScore(ctx, ArchivedKey(queue), id).Result(); err != nil {
				t.Fatalf("archived task not at ArchivedKey: %v", err)
			}
			if n, err := l.Backlog(ctx, queue); err != nil || n != 0 {
				t.Fatalf("Backlog = %d, %v; want 0 (archived tasks are not work)", n, err)
			}
			if _, err := client.Enqueue(asynq.NewTask("t", nil), asynq.Queue(queue), asynq.ProcessIn(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if n, err := l.Backlog(ctx, queue); err != nil || n != 1 {
				t.Fatalf("Backlog = %d, %v; want 1 scheduled", n, err)
			}
		})
	}
}
