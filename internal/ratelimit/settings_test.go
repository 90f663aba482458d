package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/testkit"
)

const ratesKey = "test:rates"

// hashSource is a RateSource on one Redis hash, sender digits → "rate" or "rate/burst", read
// with one HGETALL per refresh as store's is. A value that does not parse becomes NaN, so the
// Limiter's own check is what keeps it out. calls counts the reads.
func hashSource(rdb redis.UniversalClient, calls *atomic.Int64) RateSource {
	return func(ctx context.Context, _ Override) (map[string]Override, error) {
		calls.Add(1)
		raw, err := rdb.HGetAll(ctx, ratesKey).Result()
		if err != nil {
			return nil, err
		}
		out := make(map[string]Override, len(raw))
		for d, v := range raw {
			r, b, _ := strings.Cut(v, "/")
			rate, err := strconv.ParseFloat(r, 64)
			if err != nil {
				rate = math.NaN()
			}
			burst, _ := strconv.Atoi(b)
			out[d] = Override{Rate: rate, Burst: burst}
		}
		return out, nil
	}
}

// timeline is grants and the settings in force, for checking windows against the bound of
// whichever setting could apply.
type phase struct {
	from        time.Time
	rate, burst float64
}

// bound is the most grants a 1 s window starting at t may hold: rate + burst − 1 of the
// settings that apply to it, which are those in force during [t − lag, t + 1 s) (a process may
// still send under a setting for lag after it changed).
func bound(phases []phase, t time.Time, lag time.Duration) int {
	b := 0
	for i, p := range phases {
		end := time.Now().Add(time.Hour)
		if i+1 < len(phases) {
			end = phases[i+1].from
		}
		if end.After(t.Add(-lag)) && p.from.Before(t.Add(time.Second)) {
			b = max(b, int(p.rate+p.burst-1))
		}
	}
	return b
}

func countIn(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, x := range ts {
		if !x.Before(from) && x.Before(to) {
			n++
		}
	}
	return n
}

// Two processes share a sender. Its rate goes from the default (40/s) to an override of 100/s
// and then of 20/s, written to Redis while both send flat out. Each process reads the settings
// on its own, every 250 ms: within 1.5 s of each change the pair sends at the new rate,
// and no 1 s window, sliding, ever holds more than rate + burst − 1 of the settings that could
// apply to it (+2 for wake-up jitter, as the other tests allow). A second sender without an
// override keeps the default throughout.
func TestTwoProcessesFollowARateChangeAndKeepTheWindowBound(t *testing.T) {
	const (
		def     = 40
		phaseAB = 1200 * time.Millisecond
		phaseBC = 3600 * time.Millisecond
		follow  = 1500 * time.Millisecond // a change must be in force this long after it is written
	)
	s := redistest.Start(t)
	admin := s.Client(t)
	var calls [2]atomic.Int64
	pods := make([]*Limiter, 2)
	for i := range pods {
		pods[i] = pod(t, s, Config{Rate: def, Rates: hashSource(s.Client(t), &calls[i])})
	}
	const x, y = "+919800000001", "+919800000002"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gx, gy grants
	var waits []func()
	for _, l := range pods {
		waits = append(waits, hammer(ctx, t, l, x, 20, &gx), hammer(ctx, t, l, y, 10, &gy))
	}
	start := time.Now()
	phases := []phase{{start, def, float64(DefaultBurst(def))}}
	set := func(rate float64) {
		if err := admin.HSet(context.Background(), ratesKey, digits(x), strconv.FormatFloat(rate, 'g', -1, 64)).Err(); err != nil {
			t.Fatal(err)
		}
		phases = append(phases, phase{time.Now(), rate, float64(DefaultBurst(rate))})
	}
	time.Sleep(phaseAB)
	set(100) // up
	time.Sleep(phaseBC)
	set(20) // down
	time.Sleep(phaseBC)
	cancel()
	for _, w := range waits {
		w()
	}
	elapsed := time.Since(start)

	ts := gx.sorted()
	for i, p := range phases {
		from := p.from.Add(follow)
		if i == 0 {
			from = p.from.Add(200 * time.Millisecond)
		}
		n := countIn(ts, from, from.Add(time.Second))
		t.Logf("setting %d (%g/s): %d grants in the second from %v after the change", i, p.rate, n, from.Sub(p.from))
		if float64(n) < 0.85*p.rate || float64(n) > p.rate+p.burst-1+2 {
			t.Errorf("setting %d: %d grants in [%v, +1s) after it was written, want the new rate %g (≥ 85%%, ≤ rate + burst − 1 + 2)",
				i, n, from.Sub(p.from), p.rate)
		}
	}
	worst := math.MinInt
	for i, at := range ts {
		j := i
		for j < len(ts) && ts[j].Sub(at) < time.Second {
			j++
		}
		if b := bound(phases, at, follow); j-i > b+2 {
			t.Errorf("%d grants in the 1 s window from %v, want ≤ %d (+2 wake-up slack)", j-i, at.Sub(start).Round(time.Millisecond), b)
		} else {
			worst = max(worst, j-i-b)
		}
	}
	t.Logf("%d grants; the fullest window relative to its bound: %+d", len(ts), worst)

	// The sender without an override kept the default all along.
	ys := gy.sorted()
	span := ys[len(ys)-1].Sub(ys[0]).Seconds()
	if got := float64(len(ys)); got < 0.85*def*span || got > def*span+float64(DefaultBurst(def))+2 {
		t.Errorf("sender without an override: %d grants in %.2fs, want the default %d/s", len(ys), span, def)
	}
	if m := maxInWindow(ys, time.Second); m > def+DefaultBurst(def)-1+2 {
		t.Errorf("sender without an override: %d grants in a 1 s window, want ≤ %d", m, def+DefaultBurst(def)-1)
	}

	// One read of all the settings per process per refreshEvery, however many messages.
	for i := range pods {
		if n := calls[i].Load(); float64(n) > elapsed.Seconds()/refreshEvery.Seconds()+3 {
			t.Errorf("pod %d read the settings %d times in %v: want about one a second", i, n, elapsed)
		}
	}
	for i, l := range pods {
		if r, b, o := l.Setting(x); r != 20 || b != 2 || !o {
			t.Errorf("pod %d: Setting = %v/s burst %d override %v, want the last override", i, r, b, o)
		}
	}
}

// A setting the Limiter cannot use (from a bad source, or bad data behind a good one) is
// ignored: the sender has the default, and the other senders' overrides still apply. A source
// that fails keeps the last settings it gave.
func TestBadOverridesAreIgnoredAndTheDefaultUsed(t *testing.T) {
	s := redistest.Start(t)
	var calls atomic.Int64
	inner := hashSource(s.Client(t), &calls)
	var fail atomic.Bool
	src := func(ctx context.Context, def Override) (map[string]Override, error) {
		if fail.Load() {
			return nil, errors.New("boom")
		}
		return inner(ctx, def)
	}
	l := pod(t, s, Config{Rate: 5, Rates: src})
	bad := map[string]string{
		"911": "abc", "912": "-5", "913": "1e300", "914": "NaN", "915": "+Inf", "916": "0",
		"917": "10/-3", "918": "10/2000000", "919": "",
	}
	admin := s.Client(t)
	ctx := context.Background()
	for d, v := range bad {
		admin.HSet(ctx, ratesKey, d, v)
	}
	admin.HSet(ctx, ratesKey, "920", "50/7")
	if _, err := l.Wait(ctx, "+920"); err != nil { // the first fetch reads the settings
		t.Fatal(err)
	}
	for d := range bad {
		if r, b, o := l.Setting("+" + d); r != 5 || b != 1 || o {
			t.Errorf("sender %s with %q stored: Setting = %v/s burst %d override %v, want the default 5/s burst 1", d, bad[d], r, b, o)
		}
	}
	if r, b, o := l.Setting("920"); r != 50 || b != 7 || !o {
		t.Errorf("valid override: Setting = %v/s burst %d override %v, want 50/s burst 7", r, b, o)
	}
	if st := l.Stats(); st.BadRates != uint64(len(bad)) {
		t.Errorf("BadRates = %d, want %d", st.BadRates, len(bad))
	}

	// A sender with a bad value sends at the default: 5/s, burst 1, for 1.2 s → about 7.
	wctx, cancel := context.WithTimeout(ctx, 1200*time.Millisecond)
	var g grants
	hammer(wctx, t, l, "+914", 5, &g)()
	cancel()
	if n := g.count(); n < 5 || n > 8 {
		t.Errorf("sender with NaN stored: %d grants in 1.2 s, want about 7 (the default 5/s)", n)
	}

	// The source fails: the last settings stay.
	fail.Store(true)
	<-l.startRefresh()
	if r, _, o := l.Setting("920"); r != 50 || !o {
		t.Errorf("after a failed read: Setting = %v/s override %v, want the last good 50/s", r, o)
	}
	if l.Stats().RateErrors == 0 {
		t.Error("RateErrors = 0 after a failed read")
	}
}

// A process that idled reads the settings before it asks for slots again, so a new burst
// applies to its very first send: at rate 1, burst 5, four slots are due at once (the fifth
// half a slot later, see tolerance), where the default would give one a second (the fourth at
// 3 s). Four Waits one after the other make four calls, which the per-process call pace (4/s
// after a burst of 2) spreads over ~0.5 s: well apart from 3 s.
func TestAnIdleProcessReadsTheSettingBeforeItsFirstSend(t *testing.T) {
	s := redistest.Start(t)
	var calls atomic.Int64
	read := hashSource(s.Client(t), &calls)
	slow := func(ctx context.Context, def Override) (map[string]Override, error) {
		time.Sleep(150 * time.Millisecond) // so a fetch that did not wait for it would go first
		return read(ctx, def)
	}
	l := pod(t, s, Config{Rate: 1, Rates: slow})
	if err := s.Client(t).HSet(context.Background(), ratesKey, "919800000009", "1/5").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 4 {
		if _, err := l.Wait(context.Background(), "+919800000009"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("grant %d after %v: the process sent under the default, not the override it had to read first", i, d)
		}
	}
	// The first read, then the refresher's while callers wait: one per refreshEvery, not one
	// per Wait.
	if n, most := calls.Load(), 1+int64(time.Since(start)/refreshEvery); n > most {
		t.Errorf("%d reads of the settings in %v, want at most %d", n, time.Since(start), most)
	}
}

// The script moves the TAT onto a new setting: the next slot conforms no earlier than under the
// old setting (no extra burst), never more than settle from now (a rate raised from 0.01/s is
// followed in about a second, not in 100), and the setting is recorded beside the TAT.
func TestTheScriptJoinsTheOldScheduleToTheNew(t *testing.T) {
	s := redistest.Start(t)
	l := pod(t, s, Config{Rate: 1})
	ctx := context.Background()
	rdb := s.Client(t)
	near := func(got, want time.Duration) bool {
		return got >= want-20*time.Millisecond && got <= want+20*time.Millisecond
	}
	for _, tc := range []struct {
		name       string
		old, new   *params
		take       int           // slots taken under old
		wantFirst  time.Duration // TAT − now after the move: where the new run starts
		wantNextAt time.Duration // when the new setting's next slot conforms
	}{
		// 1/s → 100/s: the old next slot is 1 s away; the new one conforms then, not before.
		{"up, near", derive(1, 0), derive(100, 0), 1, 1085 * time.Millisecond, time.Second},
		// 0.01/s → 100/s: the old next slot is 100 s away; the new one waits only settle.
		{"up, far", derive(0.01, 0), derive(100, 0), 1, settle + 85*time.Millisecond, settle},
		// 1/s with a burst of 100 spent → 0.5/s: not a 100 s pause, settle at most.
		{"down after a big burst", derive(1, 100), derive(0.5, 0), 100, settle, settle},
		// 100/s → 20/s, one slot taken: the next charge is T₀ after the last, so 20 ms on.
		{"down, near", derive(100, 0), derive(20, 0), 1, 10*time.Millisecond + 40*time.Millisecond, 10*time.Millisecond + 15*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb.FlushDB(ctx)
			key := l.key("1")
			g, _, err := l.reserve(ctx, tc.old, key, tc.take, tc.take, 0)
			if err != nil || g.n != tc.take {
				t.Fatalf("old setting: %+v %v", g, err)
			}
			g, _, err = l.reserve(ctx, tc.new, key, 1, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !near(g.first, tc.wantFirst) {
				t.Errorf("after the move the run starts %v from now, want %v", g.first, tc.wantFirst)
			}
			if next := tc.new.conformAt(float64(g.first.Microseconds()) + tc.new.intervalUS); !near(next, tc.wantNextAt) {
				t.Errorf("next slot conforms in %v, want %v", next, tc.wantNextAt)
			}
			want := fmt.Sprintf("%s %s", strconv.FormatFloat(tc.new.intervalUS, 'g', -1, 64), strconv.FormatFloat(tc.new.tauUS, 'g', -1, 64))
			if got, err := rdb.Get(ctx, key+":p").Result(); err != nil || got != want {
				t.Errorf("recorded setting = %q %v, want %q", got, err, want)
			}
			// The move is written even though nothing was granted, so the next call under the
			// same setting does not move it again (it would slide forward for ever).
			g2, _, err := l.reserve(ctx, tc.new, key, 1, 1, 0)
			if kept := g.first + time.Duration(float64(g.n)*tc.new.intervalUS)*time.Microsecond; err != nil || g2.first > kept {
				t.Errorf("second call under the new setting starts at %v, want at most %v, %v: the move was not kept", g2.first, kept, err)
			}
		})
	}
}

// Settings from a source that gives odd keys ("+" or not) apply to the sender either way, and
// a refresh while callers wait goes through the wake-up of the pausing fetcher: a sender on a
// very low rate, whose fetcher waits for a slot far away, gets the new rate within seconds.
func TestARaisedRateWakesAFetcherPausedOnTheOldSchedule(t *testing.T) {
	s := redistest.Start(t)
	var calls atomic.Int64
	l := pod(t, s, Config{Rate: 0.05, Rates: hashSource(s.Client(t), &calls)}) // one per 20 s
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var g grants
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := l.Wait(ctx, "+919800000005"); err == nil {
					g.add(time.Now())
				}
			}
		})
	}
	testkit.Eventually(t, 10*time.Second, "the first grant", func() bool { return g.count() >= 1 })
	time.Sleep(300 * time.Millisecond) // the others now wait for a slot ~20 s away
	changed := time.Now()
	s.Client(t).HSet(context.Background(), ratesKey, "+919800000005", "10")
	testkit.Eventually(t, 10*time.Second, "grants at the new rate", func() bool { return g.count() >= 11 })
	cancel()
	wg.Wait()
	ts := g.sorted()
	if d := ts[1].Sub(changed); d > 3*time.Second {
		t.Errorf("first grant under the new rate %v after the change, want within 3 s", d)
	}
	if m := maxInWindow(ts, time.Second); m > 10+1-1+2 {
		t.Errorf("%d grants in a 1 s window, want ≤ rate + burst − 1 = 10 (+2 wake-up slack)", m)
	}
}

// The brief of `wabulk sender rate`: once the command has returned a lowered rate, no process
// sends faster than it from a second later on, however many callers wait and whatever slots
// the processes held. Three processes with 20 callers each (the worker's dispatcher Waits
// before it takes a job, WABULK_CONCURRENCY callers per sender) send flat out at 32/s, where
// the horizon is a whole second, so each process may hold up to a second of slots. The rate is
// lowered to 5/s (burst 1) at a random phase of the processes' reads. Every 1 s window that
// starts a second or more after the change holds at most 5 grants (+2 wake-up slack, as the
// other tests allow), and the grants from then on are no more than 5/s plus the burst.
func TestALoweredRateBindsWithinASecond(t *testing.T) {
	const (
		oldRate, newRate = 32, 5
		pods, callers    = 3, 20
		after            = 3500 * time.Millisecond // measured after the change
	)
	s := redistest.Start(t)
	admin := s.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g grants
	var waits []func()
	var calls [pods]atomic.Int64
	for i := range pods {
		l := pod(t, s, Config{Rate: oldRate, Rates: hashSource(s.Client(t), &calls[i])})
		waits = append(waits, hammer(ctx, t, l, "+919800000007", callers, &g))
	}
	time.Sleep(1200*time.Millisecond + rand.N(250*time.Millisecond))
	if err := admin.HSet(context.Background(), ratesKey, "919800000007", strconv.Itoa(newRate)).Err(); err != nil {
		t.Fatal(err)
	}
	changed := time.Now() // the command has returned
	time.Sleep(after)
	cancel()
	for _, w := range waits {
		w()
	}

	from := changed.Add(time.Second)
	var late []time.Time
	for _, x := range g.sorted() {
		if !x.Before(from) {
			late = append(late, x)
		}
	}
	burst := DefaultBurst(newRate)
	m := maxInWindow(late, time.Second)
	span := after - time.Second
	t.Logf("%d grants in all, %d from 1 s after the change (%v); fullest 1 s window from then %d (bound %d)",
		g.count(), len(late), span, m, newRate+burst-1)
	for i, x := range late {
		if n := countIn(late[i:], x, x.Add(time.Second)); n > newRate+burst-1+2 {
			t.Errorf("%d grants in the 1 s window from %v after the change, want ≤ %d (+2 wake-up slack): the old rate %d/s still applied",
				n, x.Sub(changed).Round(time.Millisecond), newRate+burst-1, oldRate)
		}
	}
	if most := int(newRate*span.Seconds()) + burst + 2; len(late) > most {
		t.Errorf("%d grants in the %v from 1 s after the change, want ≤ %d (the new rate, its burst, +2)", len(late), span, most)
	}
	if len(late) < newRate {
		t.Errorf("%d grants in the %v from 1 s after the change: the sender stalled instead of sending at %d/s", len(late), span, newRate)
	}
}

// The dispatcher Waits once per job before it takes the job, with WABULK_CONCURRENCY callers
// per sender: however many wait, the slots a process holds (granted, not yet used or dropped)
// stay within about a second of the rate, its horizon plus the burst. Two processes with 50
// callers each, sampled while they send flat out; the sum over both must stay within it too,
// since they share one schedule.
func TestManyWaitingCallersHoldAtMostASecondOfSlots(t *testing.T) {
	for _, rate := range []float64{2, 20, 300} {
		t.Run(fmt.Sprintf("rate=%g", rate), func(t *testing.T) {
			s := redistest.Start(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var g grants
			var waits []func()
			ls := make([]*Limiter, 2)
			for i := range ls {
				ls[i] = pod(t, s, Config{Rate: rate})
				waits = append(waits, hammer(ctx, t, ls[i], "+919800000008", 50, &g))
			}
			limit := int(rate*maxHorizon.Seconds()) + DefaultBurst(rate) + 1
			worst := 0
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				held := 0
				for _, l := range ls {
					reserved := l.reserved.Load() // first: later reads can only lower the figure
					held += int(reserved) - int(l.tokens.Load()) - int(l.unused.Load())
				}
				worst = max(worst, held)
			}
			cancel()
			for _, w := range waits {
				w()
			}
			t.Logf("%d grants; at most %d slots held at once by both processes (limit %d)", g.count(), worst, limit)
			if worst > limit {
				t.Errorf("the processes held %d slots at once, want ≤ %d (a second of the rate, the burst, +1)", worst, limit)
			}
		})
	}
}

// Slots held while nothing fetches (every caller has one, so the refresher has stopped) are not
// used under settings read 0.5 s or more before. At 5/s (burst 1) five callers get slots at
// 0, 0.2, 0.4, 0.6 and 0.8 s in one call; the rate is lowered to 1/s right after the first. The
// slots due before 0.5 s are used; the later ones read the settings first, find them void, and
// their callers wait for the new schedule, which starts where the old one ended (1 s) plus one
// new slot: nothing is sent between 0.5 s and 1.5 s after the change.
func TestHeldSlotsAreNotUsedUnderStaleSettings(t *testing.T) {
	s := redistest.Start(t)
	var calls atomic.Int64
	l := pod(t, s, Config{Rate: 5, Rates: hashSource(s.Client(t), &calls)})
	const sender = "+919800000006"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var g grants
	first := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := l.Wait(ctx, sender); err != nil {
				t.Errorf("Wait: %v", err)
				return
			}
			g.add(time.Now())
			once.Do(func() { close(first) })
		})
	}
	<-first
	if err := s.Client(t).HSet(context.Background(), ratesKey, digits(sender), "1").Err(); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	wg.Wait()
	ts := g.sorted()
	var at []time.Duration
	for _, x := range ts {
		at = append(at, x.Sub(changed).Round(time.Millisecond))
	}
	t.Logf("grants at %v from the change; %d reads of the settings", at, calls.Load())
	if n := countIn(ts, changed.Add(500*time.Millisecond), changed.Add(1500*time.Millisecond)); n > 0 {
		t.Errorf("%d grants between 0.5 s and 1.5 s after the rate went from 5/s to 1/s, want none: held slots were used under the old setting", n)
	}
	if len(ts) != 5 {
		t.Errorf("%d grants, want all 5 callers served", len(ts))
	}
}
