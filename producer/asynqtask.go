package producer

// This file writes tasks into Redis in asynq v0.26.0's own layout, many tasks per Redis call.
// It mirrors asynq's internals (rdb.enqueueCmd, base.TaskKey, base.PendingKey, base.AllQueues,
// base.EncodeMessage and the defaults of Client.EnqueueContext) because asynq has no batch
// enqueue, and one round trip per task is what bounds a loop of Client.Enqueue calls: a
// campaign of a million rows would wait for a million of them. The tests enqueue the same job
// through asynq.Client and through this file and require byte-identical messages, equal
// Inspector views and an asynq.Server that processes the result, so they fail if a new asynq
// changes the layout.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// asynqDefaultTimeout is the Timeout asynq.Client.EnqueueContext gives a task that sets
// neither a timeout nor a deadline (asynq's defaultTimeout).
const asynqDefaultTimeout = 30 * time.Minute

// enqueueScript is asynq's enqueueCmd for many tasks: for each, a task key that exists is a
// TaskID conflict (0); otherwise the task hash is written as pending and its id pushed on the
// queue's pending list (1). A script runs alone, so a TaskID twice in one call comes out as 1
// then 0, as two Enqueue calls in a row would. Every key holds the hash tag {queue}, so one
// call stays in one slot on Redis Cluster.
//
// KEYS[1] -> asynq:{<queue>}:pending
// KEYS[1+i] -> asynq:{<queue>}:t:<id of task i>
// ARGV[1] -> current unix time in nanoseconds
// ARGV[2i], ARGV[2i+1] -> id and encoded TaskMessage of task i
var enqueueScript = redis.NewScript(`
local added = {}
for i = 1, #KEYS - 1 do
	if redis.call("EXISTS", KEYS[1 + i]) == 1 then
		added[i] = 0
	else
		redis.call("HSET", KEYS[1 + i], "msg", ARGV[2 * i + 1], "state", "pending", "pending_since", ARGV[1])
		redis.call("LPUSH", KEYS[1], ARGV[2 * i])
		added[i] = 1
	end
end
return added
`)

// task is one task to enqueue: its TaskID and payload.
type task struct {
	id      string
	payload []byte
}

// asynqQueue enqueues tasks of one type into one asynq queue with the options every wabulk
// task shares. It is safe for concurrent use.
type asynqQueue struct {
	rdb        redis.UniversalClient
	queue      string
	taskType   string
	maxRetry   int
	retention  time.Duration
	published  atomic.Bool // the queue is in asynq:queues
	pendingKey string
	taskPrefix string
}

func newAsynqQueue(rdb redis.UniversalClient, queue, taskType string, maxRetry int, retention time.Duration) *asynqQueue {
	prefix := "asynq:{" + queue + "}:"
	return &asynqQueue{rdb: rdb, queue: queue, taskType: taskType, maxRetry: maxRetry, retention: retention,
		pendingKey: prefix + "pending", taskPrefix: prefix + "t:"}
}

// enqueue puts tasks in the pending list with one Redis script call. added[i] is false when
// tasks[i]'s TaskID was already held (pending, retrying, or completed within its retention).
// On an error Redis may hold any of the tasks.
func (q *asynqQueue) enqueue(ctx context.Context, tasks []task) (added []bool, err error) {
	if !q.published.Load() {
		// asynq lists a queue in asynq:queues when it first enqueues to it; Inspector.Queues and
		// asynqmon find queues there. Kept out of the script: that key has no {queue} tag.
		if err := q.rdb.SAdd(ctx, "asynq:queues", q.queue).Err(); err != nil {
			return nil, err
		}
		q.published.Store(true)
	}
	keys := make([]string, 1, 1+len(tasks))
	keys[0] = q.pendingKey
	args := make([]any, 1, 1+2*len(tasks))
	args[0] = time.Now().UnixNano()
	var buf []byte
	for _, t := range tasks {
		keys = append(keys, q.taskPrefix+t.id)
		start := len(buf)
		buf = q.message(buf, t)
		args = append(args, t.id, buf[start:len(buf):len(buf)])
	}
	res, err := enqueueScript.Run(ctx, q.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(res) != len(tasks) {
		return nil, fmt.Errorf("enqueue script answered %d results for %d tasks", len(res), len(tasks))
	}
	added = make([]bool, len(tasks))
	for i, n := range res {
		added[i] = n == 1
	}
	return added, nil
}

// message appends t as base.EncodeMessage writes the TaskMessage asynq.Client.EnqueueContext
// builds for it: proto3 fields in field-number order, zero values left out. Headers (15),
// Deadline (9, Unix time 0 when only a timeout is set), UniqueKey and GroupKey are empty for
// wabulk's tasks; Retried, ErrorMsg, LastFailedAt and CompletedAt are zero when enqueued.
func (q *asynqQueue) message(b []byte, t task) []byte {
	b = appendString(b, 1, q.taskType)
	if len(t.payload) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, t.payload)
	}
	b = appendString(b, 3, t.id)
	b = appendString(b, 4, q.queue)
	b = appendVarint(b, 5, uint64(int64(int32(q.maxRetry)))) // int32: a negative one sign-extends
	b = appendVarint(b, 8, uint64(int64(asynqDefaultTimeout.Seconds())))
	b = appendVarint(b, 12, uint64(int64(q.retention.Seconds())))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
