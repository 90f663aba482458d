package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/testkit"
)

func TestSenderRatesSetClearList(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	if err := l.SetSenderRate(ctx, "+919876543210", 20, 0); err != nil {
		t.Fatal(err)
	}
	// Any way of writing the number names the same sender.
	if err := l.SetSenderRate(ctx, "91 98765-43211", 5.5, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.SetSenderRate(ctx, "919876543210", 25, 0); err != nil { // replaces the first
		t.Fatal(err)
	}
	got, err := l.SenderRates(ctx)
	want := map[string]SenderRate{"919876543210": {Rate: 25}, "919876543211": {Rate: 5.5, Burst: 3}}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("SenderRates = %v, %v; want %v", got, err, want)
	}

	if err := l.ClearSenderRate(ctx, "+91 98765 43210"); err != nil {
		t.Fatal(err)
	}
	if err := l.ClearSenderRate(ctx, "+919876543219"); err != nil { // none set: not an error
		t.Errorf("clearing a sender without an override: %v", err)
	}
	got, _ = l.SenderRates(ctx)
	if want := map[string]SenderRate{"919876543211": {Rate: 5.5, Burst: 3}}; !maps.Equal(got, want) {
		t.Errorf("after clear: %v, want %v", got, want)
	}

	for _, tc := range []struct {
		sender string
		rate   float64
		burst  int
		want   error
	}{
		{"", 10, 0, ErrBadSender},
		{"not a number", 10, 0, ErrBadSender},
		{"+1", 10, 0, ErrBadSender},
		{"+919876543210{x}", 10, 0, ErrBadSender},
		{"+919876543212", 0, 0, ErrBadRate},
		{"+919876543212", -1, 0, ErrBadRate},
		{"+919876543212", math.NaN(), 0, ErrBadRate},
		{"+919876543212", math.Inf(1), 0, ErrBadRate},
		{"+919876543212", ratelimit.MaxRate * 2, 0, ErrBadRate},
		{"+919876543212", 10, -1, ErrBadRate},
		{"+919876543212", 10, ratelimit.MaxBurst + 1, ErrBadRate},
	} {
		if err := l.SetSenderRate(ctx, tc.sender, tc.rate, tc.burst); !errors.Is(err, tc.want) {
			t.Errorf("SetSenderRate(%q, %v, %d) = %v, want %v", tc.sender, tc.rate, tc.burst, err, tc.want)
		}
	}
	if err := l.ClearSenderRate(ctx, "nope"); !errors.Is(err, ErrBadSender) {
		t.Errorf("ClearSenderRate(nope) = %v, want ErrBadSender", err)
	}
	if got, _ := l.SenderRates(ctx); len(got) != 1 {
		t.Errorf("refused settings were written: %v", got)
	}
}

// Whatever lands in the hash by other means (redis-cli, a bug, a future version) is read
// defensively: values that are not a rate in range are left out, so the limiter keeps the
// default for that sender; a bare number typed by hand is taken as a rate.
func TestSenderRatesSkipWhatIsNotARate(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	for field, v := range map[string]string{
		"911": "abc", "912": "-5", "913": "1e400", "914": "NaN", "915": "{}", "916": `{"rate":"7"}`,
		"917": `{"rate":7,"extra":1}`, "918": `{"rate":2e6}`, "919": `{"rate":7,"burst":-1}`,
		"920": `{"rate":7} {"rate":8}`, "921": "Infinity", "922": "", "+923": "7", "92a": "7",
		"931": "12", "932": ` {"rate":0.5,"burst":4} `,
	} {
		l.rdb.HSet(ctx, l.ratesKey(), field, v)
	}
	got, err := l.SenderRates(ctx)
	want := map[string]SenderRate{"931": {Rate: 12}, "932": {Rate: 0.5, Burst: 4}}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("SenderRates = %v, %v; want only the valid %v", got, err, want)
	}
}

func TestSyncSenderRatesPublishesTheDefault(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	if _, ok, err := l.DefaultSenderRate(ctx); ok || err != nil {
		t.Fatalf("default before any worker: %v %v", ok, err)
	}
	l.SetSenderRate(ctx, "+919876543210", 3, 0)
	got, err := l.SyncSenderRates(ctx, SenderRate{Rate: 80, Burst: 8})
	if err != nil || !maps.Equal(got, map[string]SenderRate{"919876543210": {Rate: 3}}) {
		t.Errorf("SyncSenderRates = %v, %v", got, err)
	}
	def, ok, err := l.DefaultSenderRate(ctx)
	if err != nil || !ok || def != (SenderRate{Rate: 80, Burst: 8}) {
		t.Errorf("DefaultSenderRate = %+v %v %v, want 80/s burst 8", def, ok, err)
	}
	if ttl := l.rdb.TTL(ctx, l.defaultRateKey()).Val(); ttl <= 0 || ttl > defaultRateTTL {
		t.Errorf("published default TTL = %v, want up to %v", ttl, defaultRateTTL)
	}
}

// The counter adds up in memory and writes once per flush into the minute's bucket;
// SentLastMinute adds the current minute to the share of the previous one still in the window.
func TestSendCounterFlushesAndSentLastMinuteReadsIt(t *testing.T) {
	ctx := context.Background()
	rs := redistest.Start(t)
	l := New(rs.Client(t), "whatsapp", time.Hour)
	c := l.NewSendCounter()
	t0 := time.Date(2030, 1, 2, 3, 4, 30, 0, time.UTC) // half way through a minute
	c.now = func() time.Time { return t0 }
	for range 10 {
		c.Add("+919876543210")
	}
	c.Add("919876543211")
	c.Add("") // the worker's default sender
	if n := l.rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("Add wrote to Redis: %d keys", n)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil { // nothing new: nothing written, nothing counted twice
		t.Fatal(err)
	}
	got, err := l.sentLastMinute(ctx, t0.Add(10*time.Second))
	want := map[string]int64{"919876543210": 10, "919876543211": 1, DefaultSender: 1}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("same minute: %v, %v; want %v", got, err, want)
	}
	if ttl := l.rdb.TTL(ctx, l.sendsKey(t0.Unix()/60)).Val(); ttl <= 0 || ttl > sendsTTL {
		t.Errorf("bucket TTL = %v, want up to %v", ttl, sendsTTL)
	}

	// 15 s into the next minute, 3/4 of the previous minute is still in the window.
	t1 := t0.Add(45 * time.Second)
	c.now = func() time.Time { return t1 }
	for range 4 {
		c.Add("+919876543210")
	}
	c.Flush(ctx)
	got, _ = l.sentLastMinute(ctx, t1)
	if want := map[string]int64{"919876543210": 4 + 8, "919876543211": 1, DefaultSender: 1}; !maps.Equal(got, want) {
		t.Errorf("next minute: %v, want %v", got, want)
	}
	// Two minutes on, nothing is left in the window.
	if got, _ := l.sentLastMinute(ctx, t1.Add(2*time.Minute)); len(got) != 0 {
		t.Errorf("two minutes later: %v, want none", got)
	}

	// Redis down: the counts are kept and written once it is back, once.
	c.Add("+919876543212")
	rs.Stop()
	if err := c.Flush(ctx); err == nil {
		t.Fatal("flush with Redis down succeeded")
	}
	rs.Restart(t)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.sentLastMinute(ctx, t1); got["919876543212"] != 1 {
		t.Errorf("after the outage: %v, want the held count 1", got)
	}
}

// Run flushes every second, and what was added since the last tick is written when its
// context ends.
func TestSendCounterRunFlushesEverySecondAndOnStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := newLedger(t)
	c := l.NewSendCounter()
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	c.Add("+919876543210")
	c.Add("+919876543210")
	var got map[string]int64
	var err error
	testkit.Eventually(t, 3*time.Second, "SentLastMinute to count two sends", func() bool {
		got, err = l.SentLastMinute(context.Background())
		return err == nil && got["919876543210"] == 2
	}, func() string { return fmt.Sprintf("SentLastMinute = %v, %v", got, err) })
	c.Add("+919876543211")
	cancel()
	<-done
	if got, _ := l.SentLastMinute(context.Background()); got["919876543211"] != 1 {
		t.Errorf("after stop: %v, want the last send written", got)
	}
}
