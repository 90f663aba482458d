package store

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
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// asynqDefaultTimeout is the Timeout asynq.Client.EnqueueContext gives a task that sets
// neither a timeout nor a deadline (asynq's defaultTimeout).
const asynqDefaultTimeout = 30 * time.Minute

// enqueueScript is asynq's enqueueCmd for many tasks: for each, a task key that exists is a
// TaskID conflict (0); otherwise the task hash is written as pending and its id pushed on the
// queue's pending list (1). A script runs alone, so a TaskID twice in one call comes out as 1
// then 0, as two Enqueue calls in a row would. The same script counts the new tasks in the
// lane's ledger (when ARGV[2] is 1), so a kill -9 of the producer can never leave tasks in the
// queue that the counts miss, and says whether the lane is registered live (its flag is set),
// so a producer registers it only when it is not. Every key holds the hash tag {queue}, so one
// call stays in one slot on Redis Cluster.
//
// KEYS[1] -> PendingKey(queue) (asynq's layout: asynqlayout.go)
// KEYS[2] -> wabulk:{<queue>}:counts
// KEYS[3] -> wabulk:{<queue>}:live (the flag RegisterLane sets and RetireDrained clears)
// KEYS[3+i] -> TaskKey(queue, id of task i)
// ARGV[1] -> current unix time in nanoseconds
// ARGV[2] -> 1 to count the new tasks as enqueued, 0 not to (a redrive)
// ARGV[1+2i], ARGV[2+2i] -> id and encoded TaskMessage of task i
// Returns 1 or 0 per task, then 1 when the lane's live flag is set, else 0.
var enqueueScript = redis.NewScript(`
local out, n = {}, 0
for i = 1, #KEYS - 3 do
	if redis.call("EXISTS", KEYS[3 + i]) == 1 then
		out[i] = 0
	else
		redis.call("HSET", KEYS[3 + i], "msg", ARGV[2 + 2 * i], "state", "pending", "pending_since", ARGV[1])
		redis.call("LPUSH", KEYS[1], ARGV[1 + 2 * i])
		out[i] = 1
		n = n + 1
	end
end
if n > 0 and ARGV[2] == "1" then
	redis.call("HINCRBY", KEYS[2], "enqueued", n)
end
out[#KEYS - 2] = redis.call("EXISTS", KEYS[3])
return out
`)

// Task is one task to enqueue: its TaskID and payload.
type Task struct {
	ID      string
	Payload []byte
}

// Enqueuer writes tasks of one type, with the options every wabulk task shares, into asynq
// queues in asynq's own layout. It is safe for concurrent use.
type Enqueuer struct {
	rdb       redis.UniversalClient
	taskType  string
	maxRetry  int
	retention time.Duration
	published sync.Map // queue name -> time it was last added to asynq:queues
}

// Enqueuer returns an Enqueuer of tasks of taskType with maxRetry retries (≥ 0) that asynq
// keeps for the ledger's retention once completed.
func (l *Ledger) Enqueuer(taskType string, maxRetry int) *Enqueuer {
	return &Enqueuer{rdb: l.rdb, taskType: taskType, maxRetry: maxRetry, retention: l.retention}
}

// publishEvery is how often an Enqueuer adds a queue it writes to to asynq:queues again: a lane
// that was cleaned up after its retention and is used again must be listed again.
const publishEvery = time.Minute

// Enqueue puts tasks in queue's pending list with one Redis script call and, when count is set,
// counts the new ones in the queue's ledger in the same call. added[i] is false when tasks[i]'s
// TaskID was already held (pending, retrying, or completed within its retention); live reports
// whether the lane was registered live when the tasks went in (then it need not be registered
// again: see RetireDrained). On an error Redis may hold any of the tasks (and then counts
// exactly those).
func (q *Enqueuer) Enqueue(ctx context.Context, queue string, tasks []Task, count bool) (added []bool, live bool, err error) {
	if len(tasks) == 0 {
		return nil, false, nil
	}
	if t, ok := q.published.Load(queue); !ok || time.Since(t.(time.Time)) > publishEvery {
		// asynq lists a queue in asynq:queues when it first enqueues to it; Inspector.Queues and
		// asynqmon find queues there. Kept out of the script: that key has no {queue} tag.
		if err := q.rdb.SAdd(ctx, allQueuesKey, queue).Err(); err != nil {
			return nil, false, err
		}
		q.published.Store(queue, time.Now())
	}
	prefix := asynqKeys(queue).task
	keys := make([]string, 3, 3+len(tasks))
	keys[0], keys[1], keys[2] = PendingKey(queue), countsKey(queue), liveKey(queue)
	args := make([]any, 2, 2+2*len(tasks))
	args[0] = time.Now().UnixNano()
	args[1] = 0
	if count {
		args[1] = 1
	}
	var buf []byte
	for _, t := range tasks {
		keys = append(keys, prefix+t.ID)
		start := len(buf)
		buf = q.message(buf, queue, t)
		args = append(args, t.ID, buf[start:len(buf):len(buf)])
	}
	res, err := enqueueScript.Run(ctx, q.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, false, err
	}
	if len(res) != len(tasks)+1 {
		return nil, false, fmt.Errorf("enqueue script answered %d results for %d tasks", len(res), len(tasks))
	}
	added = make([]bool, len(tasks))
	for i, n := range res[:len(tasks)] {
		added[i] = n == 1
	}
	return added, res[len(tasks)] == 1, nil
}

// Pauser pauses and resumes asynq queues; *asynq.Inspector is one.
type Pauser interface {
	PauseQueue(queue string) error
	UnpauseQueue(queue string) error
}

// SetPaused pauses or resumes queue. A queue already in that state is no error (a repeat, or a
// race lost to another worker or operator): asynq exports no error value for it, only its text
// ("is already paused", "is not paused"), so this is the one place that reads that text.
func SetPaused(p Pauser, queue string, pause bool) error {
	act, already := p.UnpauseQueue, "is not paused"
	if pause {
		act, already = p.PauseQueue, "is already paused"
	}
	if err := act(queue); err != nil && !strings.Contains(err.Error(), already) {
		return err
	}
	return nil
}
