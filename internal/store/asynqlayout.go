package store

// asynq v0.26's private layout, known here and nowhere else in the store: the Redis keys asynq
// keeps for a queue (asynq:{<queue>}:…, base/keys.go) and the TaskMessage it stores in a task's
// hash (proto3, base.EncodeMessage, field numbers below). The Lua scripts get every key from
// here through their KEYS; cancelScript (cancelled.go) reads field 2 of a message itself.
//
// TaskMessage fields wabulk reads or writes: 1 type, 2 payload, 3 id, 4 queue, 5 retry, 6 retried,
// 7 error_msg, 8 timeout, 11 last_failed_at, 12 retention, 13 completed_at.

import (
	"errors"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// asynqQueue holds asynq's keys of one queue.
type asynqQueue struct {
	pending   string // list of pending task ids
	active    string // list of active task ids
	lease     string // sorted set: active task id -> lease expiry
	scheduled string // sorted set: task id -> process at
	retry     string // sorted set: task id -> retry at
	archived  string // sorted set: task id -> archive time
	completed string // sorted set: task id -> expiry
	paused    string // the queue's paused flag
	processed string // total processed counter
	failed    string // total failed counter
	task      string // prefix of a task's hash: task + id is TaskKey
	prefix    string
}

// asynqKeys returns asynq's keys of queue.
func asynqKeys(queue string) asynqQueue {
	p := asynqPrefix(queue)
	return asynqQueue{pending: p + "pending", active: p + "active", lease: p + "lease", scheduled: p + "scheduled",
		retry: p + "retry", archived: p + "archived", completed: p + "completed", paused: p + "paused",
		processed: p + "processed", failed: p + "failed", task: p + "t:", prefix: p}
}

// processedOn and failedOn are the queue's daily counters of day (2006-01-02, UTC).
func (q asynqQueue) processedOn(day string) string { return q.prefix + "processed:" + day }
func (q asynqQueue) failedOn(day string) string    { return q.prefix + "failed:" + day }

// state is the key of the queue's task state state ("pending", "active", "scheduled", "retry",
// "archived", "completed").
func (q asynqQueue) state(state string) string { return q.prefix + state }

// all is the pattern that matches every key asynq keeps for the queue.
func (q asynqQueue) all() string { return q.prefix + "*" }

// statsDay is the day asynq's daily counters are kept by.
func statsDay(now time.Time) string { return now.UTC().Format("2006-01-02") }

// allQueuesKey is asynq's set of queue names (base.AllQueues).
const allQueuesKey = "asynq:queues"

// asynqPrefix is the prefix of every key asynq keeps for queue (base.QueueKeyPrefix).
func asynqPrefix(queue string) string { return "asynq:{" + queue + "}:" }

// PendingKey is the Redis list asynq keeps a queue's pending task ids in (base.PendingKey).
func PendingKey(queue string) string { return asynqPrefix(queue) + "pending" }

// TaskKey is the Redis hash asynq keeps a task in (asynq's base.TaskKey); its "result" field is
// what asynq's ResultWriter writes and Inspector reads, and a lane's sent marker (commit.go).
func TaskKey(queue, id string) string { return asynqPrefix(queue) + "t:" + id }

// CompletedKey is asynq's sorted set of a queue's completed task ids, scored by the Unix second
// they expire (base.CompletedKey).
func CompletedKey(queue string) string { return asynqPrefix(queue) + "completed" }

// ArchivedKey is asynq's sorted set of a queue's archived task ids, scored by archive time in
// Unix seconds (base.ArchivedKey).
func ArchivedKey(queue string) string { return asynqPrefix(queue) + "archived" }

// message appends t as base.EncodeMessage writes the TaskMessage asynq.Client.EnqueueContext
// builds for it: proto3 fields in field-number order, zero values left out. Headers (15),
// Deadline (9, Unix time 0 when only a timeout is set), UniqueKey and GroupKey are empty for
// wabulk's tasks; Retried, ErrorMsg, LastFailedAt and CompletedAt are zero when enqueued.
func (q *Enqueuer) message(b []byte, queue string, t Task) []byte {
	b = appendString(b, 1, q.taskType)
	if len(t.Payload) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Payload)
	}
	b = appendString(b, 3, t.ID)
	b = appendString(b, 4, queue)
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

// asynqPausedKey is asynq's paused flag of a queue (base.PausedKey).
func asynqPausedKey(queue string) string { return asynqPrefix(queue) + "paused" }

// decodeTask reads the fields of asynq's TaskMessage a worker needs.
func decodeTask(b []byte) (*Taken, error) {
	t := &Taken{msg: b}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return t, errors.New("task message: bad tag")
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == 1 || num == 2 || num == 3):
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return t, errors.New("task message: bad field")
			}
			switch num {
			case 1:
				t.Type = string(v)
			case 2:
				t.Payload = v
			case 3:
				t.ID = string(v)
			}
			n = m
		case typ == protowire.VarintType && (num == 5 || num == 6):
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return t, errors.New("task message: bad field")
			}
			if num == 5 {
				t.Retry = int(int32(v))
			} else {
				t.Retried = int(int32(v))
			}
			n = m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return t, errors.New("task message: bad field")
			}
		}
		b = b[n:]
	}
	if t.ID == "" {
		return t, errors.New("task message: no id")
	}
	return t, nil
}

// rewrite returns msg with the varint fields in set replaced (0 drops one) and string field 7
// (error_msg) set to errMsg when withErr, in field-number order as asynq's encoder writes them.
func rewrite(msg []byte, set map[protowire.Number]int64, errMsg string, withErr bool) []byte {
	type field struct {
		num protowire.Number
		raw []byte
	}
	var fields []field
	for b := msg; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			break
		}
		_, replaced := set[num]
		if !replaced && !(withErr && num == 7) {
			fields = append(fields, field{num, b[:n+m]})
		}
		b = b[n+m:]
	}
	for num, v := range set {
		if v != 0 {
			fields = append(fields, field{num, appendVarint(nil, num, uint64(v))})
		}
	}
	if withErr && errMsg != "" {
		fields = append(fields, field{7, appendString(nil, 7, errMsg)})
	}
	// Stable insertion sort: a message has a dozen fields at most.
	for i := 1; i < len(fields); i++ {
		for j := i; j > 0 && fields[j].num < fields[j-1].num; j-- {
			fields[j], fields[j-1] = fields[j-1], fields[j]
		}
	}
	out := make([]byte, 0, len(msg)+len(errMsg)+16)
	for _, f := range fields {
		out = append(out, f.raw...)
	}
	return out
}

func statsKeys(lane string, now time.Time) (processedDay, failedDay string) {
	q, day := asynqKeys(lane), statsDay(now)
	return q.processedOn(day), q.failedOn(day)
}

// refsOf reads ref, ref1 and ref2 from a task's asynq message: its payload is field 2.
func refsOf(b []byte) (ref, ref1, ref2 string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			return refsOfPayload(v)
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return
		}
		b = b[m:]
	}
	return
}

// withQueue returns the TaskMessage msg with its queue (field 4) set to queue.
func withQueue(msg []byte, queue string) []byte {
	out := make([]byte, 0, len(msg)+len(queue))
	set := false
	for b := msg; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return msg
		}
		k := protowire.ConsumeFieldValue(num, typ, b[n:])
		if k < 0 {
			return msg
		}
		if num > 4 && !set {
			out, set = appendString(out, 4, queue), true
		}
		if num != 4 {
			out = append(out, b[:n+k]...)
		}
		b = b[n+k:]
	}
	if !set {
		out = appendString(out, 4, queue)
	}
	return out
}

// TaskMessage rewrites of the dispatch (asynq's MarkAsComplete, Retry and Archive).

// markCompleted sets completed_at.
func markCompleted(msg []byte, now time.Time) []byte {
	return rewrite(msg, map[protowire.Number]int64{13: now.Unix()}, "", false)
}

// markRetried sets retried, last_failed_at and error_msg.
func markRetried(msg []byte, retried int64, now time.Time, errMsg string) []byte {
	return rewrite(msg, map[protowire.Number]int64{6: retried, 11: now.Unix()}, errMsg, true)
}

// markArchived sets last_failed_at and error_msg.
func markArchived(msg []byte, now time.Time, errMsg string) []byte {
	return rewrite(msg, map[protowire.Number]int64{11: now.Unix()}, errMsg, true)
}
