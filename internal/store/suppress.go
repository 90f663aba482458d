package store

// The suppression list: recipients no campaign of the namespace sends to, whatever the sender.
//
//	wabulk:{ns}:suppressed   HASH E.164 number -> "<source>|<Unix seconds>" (source: cli, api, import, or the Meta code of a failed callback)
//
// The enqueue looks every batch's recipients up in one HMGET, so a suppressed number is skipped
// before any task is written. A failed status callback adds its number only when the ledger
// applies it (see delivery.go: the scope's suppressing hash).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Suppression is one number on the list.
type Suppression struct {
	Number string    `json:"number"`
	Source string    `json:"source"`
	Since  time.Time `json:"since"`
}

// MaxSuppressSource caps the bytes of a suppression's source.
const MaxSuppressSource = 64

// Suppress adds numbers (E.164, as the payloads hold them) to the list, keeping the first
// record of a number already there, and returns how many were new.
func (l *Ledger) Suppress(ctx context.Context, numbers []string, source string) (int64, error) {
	if len(source) > MaxSuppressSource || strings.Contains(source, "|") {
		return 0, errors.New("suppress: source must be at most 64 bytes without '|'")
	}
	rec := source + "|" + strconv.FormatInt(time.Now().Unix(), 10)
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(numbers))
	for i, n := range numbers {
		cmds[i] = pipe.HSetNX(ctx, l.suppressedKey(), n, rec)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("suppress: %w", err)
	}
	var added int64
	for _, c := range cmds {
		if c.Val() {
			added++
		}
	}
	return added, nil
}

// pendingSuppression is a suppression an applied failed status left in its scope's suppressing
// hash: the message's TaskID (whose last part is the number) and the source to record.
type pendingSuppression struct {
	taskID, source string
}

// suppressDue writes the pending suppressions of scope to the list (keeping a number's first
// record) and then takes them out of the scope's suppressing hash; it returns how many numbers
// were new. Two slots, two round trips: the list first, so a failure in between leaves the
// suppression pending, for the next apply of the message to return again.
func (l *Ledger) suppressDue(ctx context.Context, scope string, due []pendingSuppression) (int, error) {
	if len(due) == 0 {
		return 0, nil
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	pipe := l.rdb.Pipeline()
	var cmds []*redis.BoolCmd
	for _, d := range due {
		if to, ok := RecipientOfTask(d.taskID); ok {
			cmds = append(cmds, pipe.HSetNX(ctx, l.suppressedKey(), to, d.source+"|"+now))
		}
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("suppress: %w", err)
		}
	}
	added := 0
	for _, c := range cmds {
		if c.Val() {
			added++
		}
	}
	ids := make([]string, len(due))
	for i, d := range due {
		ids[i] = d.taskID
	}
	if err := l.rdb.HDel(ctx, suppressingKey(scope), ids...).Err(); err != nil {
		return added, fmt.Errorf("suppress: %w", err)
	}
	return added, nil
}

// Unsuppress takes numbers off the list and returns how many were on it.
func (l *Ledger) Unsuppress(ctx context.Context, numbers []string) (int64, error) {
	if len(numbers) == 0 {
		return 0, nil
	}
	n, err := l.rdb.HDel(ctx, l.suppressedKey(), numbers...).Result()
	if err != nil {
		return 0, fmt.Errorf("unsuppress: %w", err)
	}
	return n, nil
}

// Suppressed reports for each number whether it is on the list, in one round trip.
func (l *Ledger) Suppressed(ctx context.Context, numbers []string) ([]bool, error) {
	out := make([]bool, len(numbers))
	if len(numbers) == 0 {
		return out, nil
	}
	vals, err := l.rdb.HMGet(ctx, l.suppressedKey(), numbers...).Result()
	if err != nil {
		return nil, fmt.Errorf("suppression list: %w", err)
	}
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// EachSuppressed calls fn for every number on the list, in no order, in bounded memory, until fn
// returns an error, which it returns.
func (l *Ledger) EachSuppressed(ctx context.Context, fn func(Suppression) error) error {
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, l.suppressedKey(), cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("suppression list: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			src, at, _ := strings.Cut(kv[i+1], "|")
			sec, _ := strconv.ParseInt(at, 10, 64)
			if err := fn(Suppression{Number: kv[i], Source: src, Since: time.Unix(sec, 0).UTC()}); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// CountSuppressed records that campaign's enqueue skipped numbers as suppressed: it adds them
// to the campaign's suppressed count and keeps them, for the retention window, for its report.
// A number skipped again is counted once.
func (l *Ledger) CountSuppressed(ctx context.Context, campaign string, numbers []string) error {
	if len(numbers) == 0 {
		return nil
	}
	members := make([]any, len(numbers))
	for i, n := range numbers {
		members[i] = n
	}
	k := l.campaignSuppressedKey(campaign)
	added, err := l.rdb.SAdd(ctx, k, members...).Result()
	if err != nil {
		return fmt.Errorf("suppressed: %w", err)
	}
	// Two slots: a pipeline, not a transaction, so it runs on a cluster too.
	pipe := l.rdb.Pipeline()
	pipe.Expire(ctx, k, l.retention)
	if added > 0 {
		pipe.HIncrBy(ctx, countsKey(l.campaignScope(campaign)), "suppressed", added)
	}
	pipe.SAdd(ctx, l.campaignsKey(), campaign)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("suppressed: %w", err)
	}
	return nil
}

// RecipientOfTask is the recipient of a TaskID (campaign:sender:digits) as E.164.
func RecipientOfTask(taskID string) (string, bool) {
	i := strings.LastIndexByte(taskID, ':')
	if i < 0 {
		return "", false
	}
	return recipientOfDigits(taskID[i+1:])
}

// recipientOfDigits is a TaskID's last part, the recipient's digits, as E.164.
func recipientOfDigits(d string) (string, bool) {
	if d == "" || strings.ContainsFunc(d, func(r rune) bool { return r < '0' || r > '9' }) {
		return "", false
	}
	return "+" + d, true
}
