package store

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Archived is a task asynq archived, with the time it did (Unix seconds, asynq's score).
type Archived struct {
	ID string
	At int64
}

// KEYS: the queue's reconcile mark, asynq's archived set of the queue (one slot). ARGV: limit.
// Returns the ids and scores archived after the mark, oldest first.
var archivedSinceScript = redis.NewScript(`
local since = redis.call('GET', KEYS[1])
if since then since = '(' .. since else since = '-inf' end
return redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[1])
`)

// ArchivedSince returns up to limit of queue's tasks that asynq archived since the mark
// MarkReconciled last set (all of them the first time), oldest first, in one Redis call.
func (l *Ledger) ArchivedSince(ctx context.Context, queue string, limit int) ([]Archived, error) {
	vals, err := archivedSinceScript.Run(ctx, l.rdb, []string{l.ReconcileMark(queue), ArchivedKey(queue)}, limit).StringSlice()
	if err != nil {
		return nil, err
	}
	out := make([]Archived, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		at, _ := strconv.ParseFloat(vals[i+1], 64)
		out = append(out, Archived{ID: vals[i], At: int64(at)})
	}
	return out, nil
}

// MarkReconciled records that queue's archive has been read up to a. Tasks archived in the
// same second share a score, so the mark is one second before: the next read takes that second
// again (recording a dead letter is idempotent).
func (l *Ledger) MarkReconciled(ctx context.Context, queue string, a Archived) error {
	return l.rdb.Set(ctx, l.ReconcileMark(queue), strconv.FormatInt(a.At-1, 10), 0).Err()
}
