package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
)

// failedUpd is a failed update whose code suppresses when the ledger applies it (what serve
// asks for a code of WABULK_SUPPRESS_ON).
func failedUpd(id, code string, at int64) StatusUpdate {
	u := upd(id, StatusFailed, code, at)
	u.Suppress = true
	return u
}

// suppression is number's source on l's suppression list, "" when it is not on it.
func (l *Ledger) suppression(t *testing.T, number string) string {
	t.Helper()
	src := ""
	err := l.EachSuppressed(context.Background(), func(s Suppression) error {
		if s.Number == number {
			src = s.Source
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// A parked failure that suppresses puts the number on the list when its message is recorded,
// whichever way it is recorded; one that does not suppress leaves the list alone.
func TestParkedFailureSuppressesWhenMatchedWhicheverPathMatchesIt(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := l.LaneName("c", "+919000000001")
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	paths := map[string]func(taskID, msgID string) error{
		"SentMessage": func(taskID, msgID string) error { return l.SentMessage(ctx, lane, taskID, msgID, []byte("a")) },
		"SentMessage in Batch mode": func(taskID, msgID string) error {
			stop := l.Batch(8)
			defer stop()
			return l.SentMessage(ctx, lane, taskID, msgID, []byte("a"))
		},
		"MapMessage": func(taskID, msgID string) error { return l.MapMessage(ctx, lane, taskID, msgID) },
	}
	i := 0
	for name, match := range paths {
		i++
		tid, mid := fmt.Sprintf("c:919000000001:91980000000%d", i), fmt.Sprintf("wamid.%d", i)
		number := fmt.Sprintf("+91980000000%d", i)
		if res, err := l.Apply(ctx, []StatusUpdate{failedUpd(mid, "131026", 1)}); err != nil || res.Parked != 1 || res.Suppressed != 0 {
			t.Fatalf("%s: apply %+v %v", name, res, err)
		}
		if src := l.suppression(t, number); src != "" {
			t.Fatalf("%s: suppressed while parked: %q", name, src)
		}
		for range 2 { // a repeated record applies the park once
			if err := match(tid, mid); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if src := l.suppression(t, number); src != "failed 131026" {
			t.Errorf("%s: source %q, want \"failed 131026\"", name, src)
		}
		if st, code, _, _ := l.DeliveryStatus(ctx, lane, tid); st != StatusFailed || code != "131026" {
			t.Errorf("%s: status %s %s", name, st, code)
		}
	}
	if c := l.mustCounts(t); c.Failed != 3 || c.FailedCodes["131026"] != 3 {
		t.Errorf("counts %+v", c)
	}
	if n, _ := l.Unmatched(ctx); n != 0 {
		t.Errorf("unmatched %d", n)
	}
	// Parked without Suppress (a code not in WABULK_SUPPRESS_ON): recorded, not suppressed.
	l.Apply(ctx, []StatusUpdate{upd("wamid.9", StatusFailed, "131050", 1)})
	if err := l.SentMessage(ctx, lane, "c:919000000001:919800000009", "wamid.9", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if src := l.suppression(t, "+919800000009"); src != "" {
		t.Errorf("parked 131050 suppressed: %q", src)
	}
}

// Only an update the ledger applies suppresses: not a later failure of a failed message, not a
// failure after delivered (also when parked), not a duplicate of an applied one.
func TestOnlyAnAppliedFailureSuppresses(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := l.LaneName("c", "+919000000001")
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	for i := 1; i <= 3; i++ {
		if err := l.SentMessage(ctx, lane, fmt.Sprintf("c:919000000001:91980000000%d", i), fmt.Sprintf("wamid.%d", i), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	// 1: failed 131047, then failed 131026 (which would suppress): the ledger keeps 131047.
	l.Apply(ctx, []StatusUpdate{upd("wamid.1", StatusFailed, "131047", 1)})
	if res, err := l.Apply(ctx, []StatusUpdate{failedUpd("wamid.1", "131026", 2)}); err != nil || res.Matched != 1 || res.Suppressed != 0 {
		t.Fatalf("apply %+v %v", res, err)
	}
	// 2: delivered, then failed.
	l.Apply(ctx, []StatusUpdate{upd("wamid.2", StatusDelivered, "", 1), failedUpd("wamid.2", "131026", 2)})
	for _, n := range []string{"+919800000001", "+919800000002"} {
		if src := l.suppression(t, n); src != "" {
			t.Errorf("%s: not applied, but suppressed: %q", n, src)
		}
	}
	// 3: applied once, it suppresses; a duplicate does not put back a number taken off the list.
	if res, err := l.Apply(ctx, []StatusUpdate{failedUpd("wamid.3", "131026", 1)}); err != nil || res.Suppressed != 1 {
		t.Fatalf("apply %+v %v", res, err)
	}
	if n, err := l.Unsuppress(ctx, []string{"+919800000003"}); err != nil || n != 1 {
		t.Fatalf("unsuppress %d %v", n, err)
	}
	if res, err := l.Apply(ctx, []StatusUpdate{failedUpd("wamid.3", "131026", 1)}); err != nil || res.Suppressed != 0 {
		t.Fatalf("duplicate %+v %v", res, err)
	}
	if src := l.suppression(t, "+919800000003"); src != "" {
		t.Errorf("a duplicate put the number back: %q", src)
	}
	// 4: parked failure, but a delivered reached the message (through the mapping) before the
	// worker applied the park: the park is not applied and suppresses nothing.
	l.Apply(ctx, []StatusUpdate{failedUpd("wamid.4", "131026", 2)})
	l.rdb.HSet(ctx, key(lane, "dlv"), "c:919000000001:919800000004", record(upd("wamid.4", StatusDelivered, "", 1)))
	if err := l.MapMessage(ctx, lane, "c:919000000001:919800000004", "wamid.4"); err != nil {
		t.Fatal(err)
	}
	if src := l.suppression(t, "+919800000004"); src != "" {
		t.Errorf("a park not applied suppressed: %q", src)
	}
	if c := l.mustCounts(t); c.Failed != 2 || c.FailedCodes["131047"] != 1 || c.FailedCodes["131026"] != 1 {
		t.Errorf("counts %+v", c)
	}
}

// 131047 never suppresses, direct or parked, even when asked to.
func TestCode131047NeverSuppresses(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := l.LaneName("c", "+919000000001")
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	l.SentMessage(ctx, lane, "c:919000000001:919800000001", "wamid.1", []byte("a"))
	l.Apply(ctx, []StatusUpdate{failedUpd("wamid.1", NeverSuppressed, 1), failedUpd("wamid.2", NeverSuppressed, 1)})
	l.SentMessage(ctx, lane, "c:919000000001:919800000002", "wamid.2", []byte("a"))
	for _, n := range []string{"+919800000001", "+919800000002"} {
		if src := l.suppression(t, n); src != "" {
			t.Errorf("%s suppressed by 131047: %q", n, src)
		}
	}
	if c := l.mustCounts(t); c.FailedCodes[NeverSuppressed] != 2 {
		t.Errorf("counts %+v", c)
	}
}

// A suppression whose write to the list fails after the ledger applied its failure stays
// pending, and the retry (Kaleyra's, of the same callback; or the worker's, of a park) writes it,
// though the retry itself is a repeat the ledger does not apply.
func TestSuppressionLeftPendingByAFailedWriteIsWrittenByTheRetry(t *testing.T) {
	ctx := context.Background()
	rs := redistest.Start(t)
	full := rs.Client(t)
	l := New(full, "whatsapp", time.Hour)
	lane := l.LaneName("c", "+919000000001")
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	// A user that may touch everything but the suppression list.
	if err := full.Do(ctx, "ACL", "SETUSER", "nolist", "on", ">pw", "+@all",
		"~asynq:*", "~wabulk:whatsapp:*", "~wabulk:{whatsapp}:callbacks", "~wabulk:{"+lane+"}:*").Err(); err != nil {
		t.Fatal(err)
	}
	opt := *full.Options()
	opt.Username, opt.Password = "nolist", "pw"
	limited := redis.NewClient(&opt)
	t.Cleanup(func() { limited.Close() })
	broken := New(limited, "whatsapp", time.Hour)

	// Direct: the callback is applied, the list write is refused; Kaleyra's retry writes it.
	l.SentMessage(ctx, lane, "c:919000000001:919800000001", "wamid.1", []byte("a"))
	if _, err := broken.Apply(ctx, []StatusUpdate{failedUpd("wamid.1", "131026", 1)}); err == nil {
		t.Fatal("the list write was not refused")
	}
	if src := l.suppression(t, "+919800000001"); src != "" {
		t.Fatalf("on the list though refused: %q", src)
	}
	if st, _, _, _ := l.DeliveryStatus(ctx, lane, "c:919000000001:919800000001"); st != StatusFailed {
		t.Fatalf("the refused list write came before the apply: status %q", st)
	}
	if res, err := l.Apply(ctx, []StatusUpdate{failedUpd("wamid.1", "131026", 1)}); err != nil || res.Suppressed != 1 {
		t.Fatalf("retry %+v %v", res, err)
	}
	// Parked: the worker's record applies it and fails on the list; its retry writes it.
	l.Apply(ctx, []StatusUpdate{failedUpd("wamid.2", "131026", 1)})
	if err := broken.SentMessage(ctx, lane, "c:919000000001:919800000002", "wamid.2", []byte("a")); err == nil {
		t.Fatal("the list write was not refused")
	}
	if st, _, _, _ := l.DeliveryStatus(ctx, lane, "c:919000000001:919800000002"); st != StatusFailed {
		t.Fatalf("the refused list write came before the apply: status %q", st)
	}
	if err := l.SentMessage(ctx, lane, "c:919000000001:919800000002", "wamid.2", []byte("a")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"+919800000001", "+919800000002"} {
		if src := l.suppression(t, n); src != "failed 131026" {
			t.Errorf("%s: source %q after the retry", n, src)
		}
	}
	if c := l.mustCounts(t); c.Failed != 2 {
		t.Errorf("counts %+v", c)
	}
	// Written, nothing stays pending: taken off the list, the next duplicate leaves it off.
	if n, _ := full.Exists(ctx, key(lane, "suppressing")).Result(); n != 0 {
		t.Errorf("suppressions still pending")
	}
	l.Unsuppress(ctx, []string{"+919800000001"})
	l.Apply(ctx, []StatusUpdate{failedUpd("wamid.1", "131026", 1)})
	if src := l.suppression(t, "+919800000001"); src != "" {
		t.Errorf("a duplicate put the number back: %q", src)
	}
}

// On a Redis Cluster the apply, the park and the list (three slots) work as on one server.
func TestCallbackSuppressionOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	l := New(c.Client(t), "whatsapp", time.Hour)
	lane := l.LaneName("c", "+919000000001")
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	l.SentMessage(ctx, lane, "c:919000000001:919800000001", "wamid.1", []byte("a"))
	if res, err := l.Apply(ctx, []StatusUpdate{failedUpd("wamid.1", "131026", 1), failedUpd("wamid.2", "131026", 1)}); err != nil || res.Suppressed != 1 || res.Parked != 1 {
		t.Fatalf("apply %+v %v", res, err)
	}
	if err := l.SentMessage(ctx, lane, "c:919000000001:919800000002", "wamid.2", []byte("a")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"+919800000001", "+919800000002"} {
		if src := l.suppression(t, n); src != "failed 131026" {
			t.Errorf("%s: source %q", n, src)
		}
	}
}
