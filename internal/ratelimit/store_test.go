package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
)

// The limiter as the worker wires it (store.SyncSenderRates as the source): what an operator
// sets with `wabulk sender rate` applies, and whatever else is in the hash (typed by hand,
// corrupt) is ignored with the default used, and the default is published for `sender ls`.
func TestStoreOverridesReachTheLimiterAndGarbageIsIgnored(t *testing.T) {
	s := redistest.Start(t)
	rdb := s.Client(t)
	ctx := context.Background()
	ledger := store.New(rdb, "whatsapp", time.Hour)
	l, err := ratelimit.New(s.Client(t), ratelimit.Config{Rate: 4, Rates: ledger.SyncSenderRates})
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.SetSenderRate(ctx, "+919876543210", 50, 0); err != nil {
		t.Fatal(err)
	}
	garbage := map[string]string{
		"919876543211": "fast",
		"919876543212": "-5",
		"919876543213": "1e400",
		"919876543214": "NaN",
		"919876543215": `{"rate":"x"}`,
		"919876543216": `{"rate":2e6}`,
		"919876543217": `{"rate":10,"burst":-1}`,
		"919876543218": `{"rate":10,"surprise":1}`,
		"919876543219": `[`,
	}
	for d, v := range garbage {
		if err := rdb.HSet(ctx, "wabulk:{whatsapp}:senders:rates", d, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Wait(ctx, "+919876543210"); err != nil {
		t.Fatal(err)
	}
	if r, b, o := l.Setting("+919876543210"); r != 50 || b != 5 || !o {
		t.Errorf("override: Setting = %v/s burst %d override %v, want 50/s burst 5", r, b, o)
	}
	for d, v := range garbage {
		if r, b, o := l.Setting("+" + d); r != 4 || b != 1 || o {
			t.Errorf("%q stored for %s: Setting = %v/s burst %d override %v, want the default 4/s burst 1", v, d, r, b, o)
		}
	}
	if def, ok, err := ledger.DefaultSenderRate(ctx); err != nil || !ok || def.Rate != 4 || def.Burst != 1 {
		t.Errorf("published default = %+v %v %v, want 4/s burst 1", def, ok, err)
	}

	// A sender with garbage stored sends at the default: 4/s for 1.1 s is 5 grants (burst 1).
	wctx, cancel := context.WithTimeout(ctx, 1100*time.Millisecond)
	defer cancel()
	n := 0
	for {
		if _, err := l.Wait(wctx, "+919876543214"); err != nil {
			break
		}
		n++
	}
	if n < 4 || n > 6 {
		t.Errorf("sender with NaN stored: %d grants in 1.1 s, want about 5 (the default 4/s)", n)
	}
}
