package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/testkit"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// lanes is a bundle whose sandbox knows two senders, with a producer on its Redis.
func lanes(t *testing.T) (*bundle, *producer.Producer) {
	t.Helper()
	b := setup(t)
	sb, err := sandbox.Start(sandbox.Config{SID: testkit.SID, APIKey: testkit.APIKey, Senders: []string{testkit.Sender, testkit.Sender2}, Balance: -1,
		MediaIDs: []string{"m1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	b.Sandbox = sb
	p, err := producer.New(b.Redis.ConnOpt(t), producer.Config{Queue: testQueue, MaxRetry: 3, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return b, p
}

// campaign enqueues n recipients (numbers from base on) from sender with priority.
func campaign(t *testing.T, p *producer.Producer, id, sender, priority string, base, n int) {
	t.Helper()
	rows := func(yield func(producer.Row) bool) {
		for i := range n {
			if !yield(producer.Row{Fields: job.Fields{To: fmt.Sprintf("+9198%08d", base+i)}}) {
				return
			}
		}
	}
	opt := producer.Options{Priority: priority, Defaults: job.Fields{Type: "image", MediaID: "m1", From: sender}}
	s, err := p.Campaign(context.Background(), id, rows, opt, nil)
	if err != nil || s.Enqueued != n {
		t.Fatalf("enqueue %s: %+v %v", id, s, err)
	}
}

// sends are the times of the sandbox's accepted calls that keep picks.
func sends(calls []sandbox.Call, keep func(sandbox.Call) bool) []time.Time {
	var out []time.Time
	for _, c := range calls {
		if c.Answer == sandbox.AnswerOK && keep(c) {
			out = append(out, c.Time)
		}
	}
	return out
}

// within counts the times in [from, to).
func within(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

func TestSendersReachTheirRatesAtTheSameTime(t *testing.T) {
	b, p := lanes(t)
	const rate, n = 20, 200
	cfg := b.config()
	cfg.Rate, cfg.Concurrency, cfg.LaneInterval = rate, 10, 200*time.Millisecond
	b.run(cfg)
	// The first sender's campaign fills the worker's slots before the second one is enqueued:
	// with one FIFO queue the second sender sent nothing until the first one's backlog drained.
	campaign(t, p, "first", testkit.Sender, "", 0, n)
	b.waitFor("the first campaign to start", 10*time.Second, func() bool { return b.counts("first").Completed > 20 })
	campaign(t, p, "second", testkit.Sender2, "", 10_000, n)
	b.waitFor("both campaigns", 40*time.Second, func() bool {
		return b.counts("first").Completed == n && b.counts("second").Completed == n
	})
	calls := b.Sandbox.Calls()
	a := sends(calls, func(c sandbox.Call) bool { return "+"+c.From == testkit.Sender })
	c := sends(calls, func(c sandbox.Call) bool { return "+"+c.From == testkit.Sender2 })
	// The window where both are busy: from the second's first send to the first's last.
	from, to := c[0].Add(time.Second), a[len(a)-1]
	if to.Sub(from) < 3*time.Second {
		t.Fatalf("the two senders overlapped only %v: the second started too late (first sender's last send %v, second's first %v)",
			to.Sub(from)+time.Second, a[len(a)-1].Format(time.StampMilli), c[0].Format(time.StampMilli))
	}
	secs := to.Sub(from).Seconds()
	ra, rc := float64(within(a, from, to))/secs, float64(within(c, from, to))/secs
	t.Logf("over %.1fs where both were busy: sender 1 %.1f/s, sender 2 %.1f/s (rate %d each)", secs, ra, rc, rate)
	if ra < 0.9*rate || rc < 0.9*rate {
		t.Errorf("sender 1 %.1f/s, sender 2 %.1f/s, want each ≥ %.0f/s at the same time", ra, rc, 0.9*rate)
	}
}

func TestSmallCampaignAfterABigOneFinishesFirst(t *testing.T) {
	b, p := lanes(t)
	const rate, big, small = 50, 500, 25
	cfg := b.config()
	cfg.Rate, cfg.Concurrency, cfg.LaneInterval = rate, 10, 200*time.Millisecond
	b.run(cfg)
	campaign(t, p, "big", testkit.Sender, "", 0, big)
	b.waitFor("the big campaign to start", 10*time.Second, func() bool { return b.counts("big").Completed > 50 })
	campaign(t, p, "small", testkit.Sender, "", 10_000, small)
	b.waitFor("the small campaign", 20*time.Second, func() bool { return b.counts("small").Completed == small })
	bigDone := b.counts("big").Completed
	t.Logf("when the small campaign finished, the big one had sent %d of %d", bigDone, big)
	if bigDone >= big/2 {
		t.Errorf("the big campaign had sent %d of %d when the small one finished; want less than half", bigDone, big)
	}
}

func TestHighPriorityOvertakesABusySender(t *testing.T) {
	b, p := lanes(t)
	const rate, big, urgent = 50, 600, 100
	cfg := b.config()
	cfg.Rate, cfg.Concurrency, cfg.LaneInterval = rate, 10, 200*time.Millisecond
	b.run(cfg)
	campaign(t, p, "marketing", testkit.Sender, "normal", 0, big)
	b.waitFor("marketing to start", 10*time.Second, func() bool { return b.counts("marketing").Completed > 50 })
	campaign(t, p, "orders", testkit.Sender, "high", 10_000, urgent)
	b.waitFor("the orders", 20*time.Second, func() bool { return b.counts("orders").Completed == urgent })
	calls := b.Sandbox.Calls()
	hi := sends(calls, func(c sandbox.Call) bool { return strings.HasPrefix(c.To, "+919800010") })
	lo := sends(calls, func(c sandbox.Call) bool { return strings.HasPrefix(c.To, "+919800000") })
	// From the second high send (the lane is being served) to the last one.
	from, to := hi[1], hi[len(hi)-1]
	h, l := within(hi, from, to), within(lo, from, to)
	share := float64(h) / float64(h+l)
	t.Logf("while both were queued: high %d sends, normal %d: high's share %.2f", h, l, share)
	if share < 0.75 {
		t.Errorf("high priority got %.2f of the sender's sends, want ≥ 0.75", share)
	}
}

// roundOf builds one sender's round over lanes of the given priorities, all with work.
func roundOf(prios ...store.Priority) (*senderQueue, []store.Lane) {
	q := &senderQueue{lanes: map[string]*laneState{}, wake: make(chan struct{}, 1)}
	var ls []store.Lane
	for i, pr := range prios {
		ln := store.Lane{Name: fmt.Sprint("q", i), Priority: pr}
		ls = append(ls, ln)
		q.ready(ln)
	}
	return q, ls
}

func TestRoundRobinGivesHighItsShareAndEveryLaneItsTurn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lanes []store.Priority
	}{
		{"one high, one normal", []store.Priority{"high", "normal"}},
		{"one high, five normal, two low", []store.Priority{"high", "normal", "normal", "normal", "normal", "normal", "low", "low"}},
		{"two high, three normal", []store.Priority{"high", "high", "normal", "normal", "normal"}},
		{"three normal, one low", []store.Priority{"normal", "normal", "normal", "low"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, ls := roundOf(tc.lanes...)
			picks := map[string]int{}
			const n = 10000
			for range n {
				picks[q.next().lane.Name]++
			}
			high, normal, low := 0, 0, 0
			for i, pr := range tc.lanes {
				if picks[ls[i].Name] == 0 {
					t.Fatalf("lane %d (%s) never picked in %d: %v", i, pr, n, picks)
				}
				switch pr {
				case store.PriorityHigh:
					high += picks[ls[i].Name]
				case store.PriorityLow:
					low += picks[ls[i].Name]
				default:
					normal += picks[ls[i].Name]
				}
			}
			if high > 0 {
				if share := float64(high) / n; share < 0.89 {
					t.Errorf("high share %.3f of %v, want ≥ 0.89", share, picks)
				}
			}
			// Within a class, equal shares; a low lane gets half a normal one's.
			for i, pr := range tc.lanes {
				if pr == store.PriorityLow && normal > 0 {
					perNormal := float64(normal) / float64(countPrio(tc.lanes, store.PriorityNormal))
					if r := float64(picks[ls[i].Name]) / perNormal; r < 0.45 || r > 0.55 {
						t.Errorf("low lane %d got %.2f of a normal lane's sends, want 0.5", i, r)
					}
				}
			}
		})
	}
}

func countPrio(ps []store.Priority, p store.Priority) int {
	n := 0
	for _, x := range ps {
		if x == p {
			n++
		}
	}
	return n
}

// The order is deterministic: with n normal lanes, every lane is picked in any n consecutive
// picks, and a lane that gets work is picked next.
func TestRoundRobinServesEveryLaneWithinOneRoundAndANewLaneNext(t *testing.T) {
	prios := make([]store.Priority, 21)
	for i := range prios {
		prios[i] = store.PriorityNormal
	}
	q, ls := roundOf(prios...)
	var seq []string
	for range 21 * 30 {
		seq = append(seq, q.next().lane.Name)
	}
	for i := 0; i+21 <= len(seq); i++ {
		seen := map[string]bool{}
		for _, n := range seq[i : i+21] {
			seen[n] = true
		}
		if len(seen) != 21 {
			t.Fatalf("picks %d..%d cover %d of 21 lanes: %v", i, i+21, len(seen), seq[i:i+21])
		}
	}
	late := store.Lane{Name: "late", Priority: store.PriorityNormal}
	q.ready(late)
	if got := q.next().lane.Name; got != "late" {
		t.Errorf("after a lane got work the next pick is %s, want it", got)
	}
	// A lane set aside (found empty) is not picked until it gets work again.
	q.setAside(q.lanes[ls[3].Name])
	for range 100 {
		if q.next().lane.Name == ls[3].Name {
			t.Fatal("a lane set aside was picked")
		}
	}
}

func TestFinishedLaneIsGoneAfterTheRetention(t *testing.T) {
	b, _ := lanes(t)
	p, err := producer.New(b.Redis.ConnOpt(t), producer.Config{Queue: testQueue, MaxRetry: 3, Retention: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	before, err := b.RDB.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.config()
	cfg.Retention, cfg.LaneInterval = time.Second, 100*time.Millisecond
	b.run(cfg)
	campaign(t, p, "brief", testkit.Sender, "", 0, 5)
	lane := b.ledger.LaneName("brief", testkit.Sender)
	b.waitFor("the campaign to be sent", 10*time.Second, func() bool { return b.counts("brief").Completed == 5 })
	b.waitFor("the lane to be cleaned up", 15*time.Second, func() bool {
		qs, _ := b.Insp.Queues()
		for _, q := range qs {
			if q == lane {
				return false
			}
		}
		return true
	})
	b.waitFor("the lane's keys to go", 5*time.Second, func() bool {
		left, _ := b.RDB.Keys(ctx, "*{"+lane+"}*").Result()
		return len(left) == 0
	})
	live, err := b.ledger.LiveLanes(ctx)
	if err != nil || len(live) != 0 {
		t.Errorf("live lanes = %v, %v; want none", live, err)
	}
	// The campaign leaves the list a few round trips after its lane's keys are deleted.
	b.waitFor("the campaign to leave the list once its only lane is cleaned up", 5*time.Second, func() bool {
		names, err := b.ledger.Campaigns(ctx)
		return err == nil && len(names) == 0
	})
	// Nothing of the lane anywhere: every key now is one the worker keeps for itself (asynq's
	// servers and workers, wabulk's locks and lane registry), none names the campaign.
	after, _ := b.RDB.Keys(ctx, "*").Result()
	for _, k := range after {
		if strings.Contains(k, "brief") {
			t.Errorf("key %q left behind (before the campaign: %d keys)", k, len(before))
		}
	}
}

func TestASenderRateChangedAtRunTimeIsFollowedWithinFiveSeconds(t *testing.T) {
	b, p := lanes(t)
	// Rates low enough to be reached under -race on two busy cores: the test is about following
	// the change, not about throughput.
	const before, after, n = 10, 30, 320
	cfg := b.config()
	cfg.Rate, cfg.Concurrency, cfg.LaneInterval = before, 20, 200*time.Millisecond
	b.run(cfg)
	campaign(t, p, "tier", testkit.Sender, "", 0, n)
	b.waitFor("the campaign to start", 10*time.Second, func() bool { return b.counts("tier").Completed > 10 })
	changed := time.Now()
	if err := b.ledger.SetSenderRate(context.Background(), testkit.Sender, after, 0); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the campaign", 40*time.Second, func() bool { return b.counts("tier").Completed == n })
	ts := sends(b.Sandbox.Calls(), func(sandbox.Call) bool { return true })
	from, to := changed.Add(5*time.Second), ts[len(ts)-1]
	if to.Sub(from) < time.Second {
		t.Fatalf("only %v of sends after the 5 s allowance: make the campaign bigger", to.Sub(from))
	}
	got := float64(within(ts, from, to)) / to.Sub(from).Seconds()
	// Any 1 s window holds at most the larger rate + its burst (ceil(30/10) = 3) − 1, +2 for the
	// HTTP hop between the limiter's slot and the sandbox's clock.
	most := 0
	for i := range ts {
		most = max(most, within(ts[i:], ts[i], ts[i].Add(time.Second)))
	}
	t.Logf("5 s after the change: %.1f/s (was %d/s, now %d/s); most sends in any 1 s window %d", got, before, after, most)
	if got < 0.9*after {
		t.Errorf("%.1f/s from 5 s after the change, want ≥ %.0f/s", got, 0.9*after)
	}
	if most > after+3-1+2 {
		t.Errorf("%d sends in one 1 s window, want ≤ %d", most, after+3-1)
	}
}
