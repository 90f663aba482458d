package store

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The states of a recipient in a campaign's report.
const (
	ReportPending    = "pending"    // waiting, being sent or retrying
	ReportAccepted   = "accepted"   // Kaleyra accepted it; no verdict from WhatsApp (yet), or only "sent"
	ReportDelivered  = "delivered"  // on the device
	ReportRead       = "read"       // opened
	ReportFailed     = "failed"     // WhatsApp refused it after Kaleyra accepted it; code is Meta's
	ReportNotSent    = "not_sent"   // Kaleyra never passed it on
	ReportDead       = "dead"       // dead-lettered: Kaleyra refused it, or it ran out of retries; code is the dead letter's
	ReportCancelled  = "cancelled"  // removed by a cancel
	ReportSuppressed = "suppressed" // skipped at enqueue: on the suppression list
)

// ReportColumns is the report's CSV header.
var ReportColumns = []string{"to", "state", "code", "message_id", "ref", "ref1", "ref2", "updated_at"}

// ReportRow is one recipient of a campaign.
type ReportRow struct {
	To, State, Code, MessageID, Ref, Ref1, Ref2 string
	UpdatedAt                                   time.Time // zero when not known
}

// reportBatch is how many records one round trip reads.
const reportBatch = 1000

// Report calls fn for each recipient of campaign, scope by scope: the sent (with their delivery
// status), the dead letters, the jobs still waiting in the campaign's lanes, those a cancel took
// off them (cancelled.go), and the recipients its enqueues skipped as suppressed. It reads in
// batches, so a campaign of millions is reported in flat memory. Sent and cancelled jobs whose
// records passed the retention window, and tasks deleted one by one in asynqmon, are no longer
// held and are not listed.
func (l *Ledger) Report(ctx context.Context, campaign string, fn func(ReportRow) error) error {
	scopes, err := l.scopes(ctx, campaign)
	if err != nil {
		return err
	}
	st, err := l.readState(ctx, campaign)
	if err != nil {
		return err
	}
	for _, lane := range scopes {
		if err := l.reportSent(ctx, lane, st.cancelledAt, fn); err != nil {
			return err
		}
		if err := l.reportDead(ctx, lane, fn); err != nil {
			return err
		}
		if err := l.reportWaiting(ctx, lane, fn); err != nil {
			return err
		}
		if !st.cancelledAt.IsZero() {
			if err := l.reportCancelled(ctx, lane, st.cancelledAt, fn); err != nil {
				return err
			}
		}
	}
	return l.reportSuppressed(ctx, campaign, fn)
}

// reportSent lists the lane's sent jobs with their delivery status: its completed tasks that
// carry a result (the sent marker). One completed without a result was taken after its campaign
// was cancelled (at cancelled) and is listed as cancelled.
func (l *Ledger) reportSent(ctx context.Context, lane string, cancelled time.Time, fn func(ReportRow) error) error {
	return l.pageIDs(ctx, CompletedKey(lane), zrange, func(ids []string) error {
		pipe := l.rdb.Pipeline()
		dlv := pipe.HMGet(ctx, dlvKey(lane), ids...)
		tasks := make([]*redis.SliceCmd, len(ids))
		for i, id := range ids {
			tasks[i] = pipe.HMGet(ctx, TaskKey(lane, id), "msg", "result")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("report: %w", err)
		}
		var refusedIDs []string
		var refused []ReportRow
		for i, id := range ids {
			v := tasks[i].Val()
			msg, _ := v[0].(string)
			answer, sent := v[1].(string)
			row := sentRow(id, answer, dlv.Val()[i], msg)
			if !sent {
				refusedIDs = append(refusedIDs, id)
				refused = append(refused, ReportRow{To: row.To, Ref: row.Ref, Ref1: row.Ref1, Ref2: row.Ref2})
				continue
			}
			if err := fn(row); err != nil {
				return err
			}
		}
		return l.reportRefused(ctx, lane, refusedIDs, refused, cancelled, fn)
	})
}

// sentRow is the report's row of a sent job: Kaleyra's answer, its furthest delivery status
// (dlv, nil when none came) and its asynq message (for the refs).
func sentRow(id, answer string, dlv any, msg string) ReportRow {
	row := ReportRow{State: ReportAccepted, MessageID: answerMessageID([]byte(answer))}
	row.To, _ = RecipientOfTask(id)
	if rec, ok := dlv.(string); ok {
		st, code, at := parseRecord(rec)
		if st != StatusSent && st != "" {
			row.State = st
		}
		row.Code = code
		if at > 0 {
			row.UpdatedAt = time.Unix(at, 0).UTC()
		}
	}
	row.Ref, row.Ref1, row.Ref2 = refsOf([]byte(msg))
	return row
}

func (l *Ledger) reportDead(ctx context.Context, scope string, fn func(ReportRow) error) error {
	var ferr error
	_, err := l.deadLetters(ctx, scope, "", func(d DeadLetter) bool {
		row := ReportRow{State: ReportDead, Code: d.Code, Ref: d.Payload.Ref, Ref1: d.Payload.Ref1, Ref2: d.Payload.Ref2, UpdatedAt: d.Time}
		row.To, _ = RecipientOfTask(d.TaskID)
		if d.Payload.To != "" {
			row.To = d.Payload.To
		}
		ferr = fn(row)
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// reportWaiting lists a lane's pending, scheduled, active and retrying jobs.
func (l *Ledger) reportWaiting(ctx context.Context, queue string, fn func(ReportRow) error) error {
	p := asynqKeys(queue)
	emit := func(ids []string) error {
		pipe := l.rdb.Pipeline()
		msgs := l.taskMessages(ctx, pipe, queue, ids)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("report: %w", err)
		}
		for i, id := range ids {
			row := ReportRow{State: ReportPending}
			row.To, _ = RecipientOfTask(id)
			row.Ref, row.Ref1, row.Ref2 = refsOf([]byte(msgs[i].Val()))
			if err := fn(row); err != nil {
				return err
			}
		}
		return nil
	}
	for _, src := range []struct {
		key  string
		read rangeFunc
	}{{p.pending, lrange}, {p.active, lrange}, {p.scheduled, zrange}, {p.retry, zrange}} {
		if err := l.pageIDs(ctx, src.key, src.read, emit); err != nil {
			return err
		}
	}
	return nil
}

// rangeFunc reads the members a to b (by index) of a list or sorted set.
type rangeFunc func(ctx context.Context, rdb redis.UniversalClient, key string, a, b int64) *redis.StringSliceCmd

func lrange(ctx context.Context, rdb redis.UniversalClient, k string, a, b int64) *redis.StringSliceCmd {
	return rdb.LRange(ctx, k, a, b)
}

func zrange(ctx context.Context, rdb redis.UniversalClient, k string, a, b int64) *redis.StringSliceCmd {
	return rdb.ZRange(ctx, k, a, b)
}

// pageIDs calls emit with the task ids of a list or sorted set, reportBatch at a time.
func (l *Ledger) pageIDs(ctx context.Context, key string, read rangeFunc, emit func([]string) error) error {
	for start := int64(0); ; start += reportBatch {
		ids, err := read(ctx, l.rdb, key, start, start+reportBatch-1).Result()
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if len(ids) > 0 {
			if err := emit(ids); err != nil {
				return err
			}
		}
		if len(ids) < reportBatch {
			return nil
		}
	}
}

func (l *Ledger) reportSuppressed(ctx context.Context, campaign string, fn func(ReportRow) error) error {
	var cursor uint64
	for {
		nums, next, err := l.rdb.SScan(ctx, l.campaignSuppressedKey(campaign), cursor, "", reportBatch).Result()
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		for _, n := range nums {
			if err := fn(ReportRow{To: n, State: ReportSuppressed}); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// taskMessages queues a read of each task's asynq message (which holds its payload).
func (l *Ledger) taskMessages(ctx context.Context, pipe redis.Pipeliner, queue string, ids []string) []*redis.StringCmd {
	out := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		out[i] = pipe.HGet(ctx, TaskKey(queue, id), "msg")
	}
	return out
}

// answerMessageID is the first message id in Kaleyra's answer, or "".
func answerMessageID(answer []byte) string {
	k := []byte(`"messages":[{"id":"`)
	i := bytes.Index(answer, k)
	if i < 0 {
		return ""
	}
	rest := answer[i+len(k):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > MaxMessageID {
		return ""
	}
	if id := string(rest[:j]); ValidMessageID(id) {
		return id
	}
	return ""
}

// WriteReport writes campaign's report as CSV to w (header first), flushing every batch, and
// returns the rows written. Refs are written so that a spreadsheet never reads one as a formula.
func (l *Ledger) WriteReport(ctx context.Context, campaign string, w io.Writer) (int64, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(ReportColumns); err != nil {
		return 0, err
	}
	var n int64
	rec := make([]string, len(ReportColumns))
	err := l.Report(ctx, campaign, func(r ReportRow) error {
		rec[0], rec[1], rec[2], rec[3] = r.To, r.State, safeCell(r.Code), safeCell(r.MessageID)
		rec[4], rec[5], rec[6] = safeCell(r.Ref), safeCell(r.Ref1), safeCell(r.Ref2)
		rec[7] = ""
		if !r.UpdatedAt.IsZero() {
			rec[7] = r.UpdatedAt.Format(time.RFC3339)
		}
		n++
		if err := cw.Write(rec); err != nil {
			return err
		}
		if n%reportBatch == 0 {
			cw.Flush()
			return cw.Error()
		}
		return nil
	})
	if err != nil {
		// Unflushed rows stay unwritten: the caller sees the error, not a report cut mid-row.
		return n, err
	}
	cw.Flush()
	return n, cw.Error()
}

// safeCell keeps a spreadsheet from running a cell as a formula: a leading =, +, -, @, tab or
// carriage return gets a quote in front.
func safeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
