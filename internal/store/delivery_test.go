package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func upd(id, status, code string, at int64) StatusUpdate {
	return StatusUpdate{MessageID: id, Status: status, Code: code, Time: at}
}

func TestStatusMovesForwardOnlyAndCountsOnce(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := l.LaneName("c", "+919000000001")
	for i := 1; i <= 4; i++ {
		tid := fmt.Sprintf("c:919000000001:9198000000%02d", i)
		if err := l.SentMessage(ctx, lane, tid, fmt.Sprintf("wamid.%d", i), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	// 1: read before delivered, then delivered and sent late, each twice.
	// 2: failed 131047, then a late delivered (ignored: failed is final).
	// 3: delivered, then failed (ignored: a delivered message does not fail).
	// 4: not-sent.
	batches := [][]StatusUpdate{
		{upd("wamid.1", "read", "", 3), upd("wamid.2", "failed", "131047", 1)},
		{upd("wamid.1", "delivered", "", 2), upd("wamid.1", "sent", "", 1), upd("wamid.3", "delivered", "", 2)},
		{upd("wamid.2", "delivered", "", 5), upd("wamid.3", "failed", "131026", 6), upd("wamid.4", "not_sent", "", 1)},
	}
	for range 2 {
		for _, b := range batches {
			if _, err := l.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := l.mustCounts(t)
	if c.Delivered != 2 || c.Read != 1 || c.Failed != 1 || c.NotSent != 1 || c.FailedCodes["131047"] != 1 || len(c.FailedCodes) != 1 {
		t.Fatalf("counts: %+v", c)
	}
	if st, code, at, _ := l.DeliveryStatus(ctx, lane, "c:919000000001:919800000001"); st != "read" || code != "" || at != 3 {
		t.Fatalf("status of 1: %s %s %d", st, code, at)
	}
}

func TestCallbackBeforeTheMappingCountsOnceBothArrive(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := l.LaneName("c", "+919000000001")
	l.rdb.SAdd(ctx, l.campaignKey("c"), lane)
	res, err := l.Apply(ctx, []StatusUpdate{upd("wamid.early", "delivered", "", 1), upd("wamid.early", "sent", "", 0)})
	if err != nil || res.Parked != 2 || res.Matched != 0 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if n, _ := l.Unmatched(ctx); n != 1 {
		t.Fatalf("unmatched before the mapping: %d", n)
	}
	if c := l.mustCounts(t); c.Delivered != 0 {
		t.Fatalf("counted before the mapping: %+v", c)
	}
	// The worker records the message; the parked status applies then, once, even if Sent repeats.
	for range 2 {
		if err := l.SentMessage(ctx, lane, "c:919000000001:919800000001", "wamid.early", []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	if c := l.mustCounts(t); c.Delivered != 1 {
		t.Fatalf("after the mapping: %+v", c)
	}
	if n, _ := l.Unmatched(ctx); n != 0 {
		t.Fatalf("unmatched after the mapping: %d", n)
	}
	// Read after the mapping goes straight to the lane.
	if res, err := l.Apply(ctx, []StatusUpdate{upd("wamid.early", "read", "", 2)}); err != nil || res.Matched != 1 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if c := l.mustCounts(t); c.Delivered != 1 || c.Read != 1 {
		t.Fatalf("after read: %+v", c)
	}
	// An unknown id is counted unmatched once, however often it comes.
	for range 3 {
		l.Apply(ctx, []StatusUpdate{upd("wamid.nobody", "delivered", "", 1)})
	}
	if n, _ := l.Unmatched(ctx); n != 1 {
		t.Fatalf("unmatched: %d", n)
	}
}

func TestApplyRefusesHostileUpdates(t *testing.T) {
	l := newLedger(t)
	for _, u := range []StatusUpdate{
		upd("", "sent", "", 1), upd("wamid.{x}", "sent", "", 1), upd("a b", "sent", "", 1),
		upd(string(make([]byte, MaxMessageID+1)), "sent", "", 1), upd("wamid.1", "bogus", "", 1),
		upd("wamid.1", "failed", "1|2", 1), upd("wamid.1", "failed", string(make([]byte, 40)), 1),
	} {
		if _, err := l.Apply(context.Background(), []StatusUpdate{u}); err != ErrBadUpdate {
			t.Errorf("Apply(%+v) = %v, want ErrBadUpdate", u, err)
		}
	}
}

// TestMemoryPerMessage measures what the status records cost in Redis per accepted message:
// the message id's mapping and the furthest status.
func TestMemoryPerMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	l := newLedger(t)
	lane := l.LaneName("campaign-2024-05", "+919000000001")
	const n = 20000
	used := func() int64 {
		s, _ := l.rdb.Info(ctx, "memory").Result()
		for _, line := range strings.Split(s, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("INFO memory has no used_memory")
		return 0
	}
	before := used()
	pipe := l.rdb.Pipeline()
	for i := range n {
		tid := fmt.Sprintf("campaign-2024-05:919000000001:9198%08d", i)
		mid := fmt.Sprintf("wamid.%032x", i)
		pipe.Set(ctx, l.mapKey(mid), l.mapValue(lane, tid), time.Hour)
		pipe.HSet(ctx, key(lane, "dlv"), tid, record(upd(mid, "delivered", "", 1715000000)))
		if pipe.Len() > 1000 {
			pipe.Exec(ctx)
		}
	}
	pipe.Exec(ctx)
	per := float64(used()-before) / n
	t.Logf("status records: %.0f bytes per message (mapping with TTL + furthest status)", per)
	if per > 400 {
		t.Fatalf("%.0f bytes per message", per)
	}
}
