package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/store"
)

// SenderInfo is one sender as `wabulk sender ls` and GET /v1/senders show it.
type SenderInfo struct {
	// Number is the sender in E.164 ("+919…"), or "default" for lanes whose jobs name no
	// sender when the worker's KALEYRA_FROM is not known here.
	Number string `json:"number"`
	// Rate is the messages per second workers allow the sender, all together.
	Rate float64 `json:"rate"`
	// Burst is how many sends the limiter may let through at once.
	Burst int `json:"burst"`
	// Override is true when Rate and Burst are the sender's own (`wabulk sender rate`), false
	// when they are the workers' default (WABULK_RATE, WABULK_BURST).
	Override bool `json:"override"`
	// Backlog is the sender's jobs not finished yet: pending, scheduled, active or retrying, over
	// its live lanes.
	Backlog int64 `json:"backlog"`
	// SentLastMinute is the sends workers counted in the last 60 s (an estimate from per-minute
	// counts, exact while the rate is steady).
	SentLastMinute int64 `json:"sent_last_minute"`
}

// SenderDefaults is what a sender without an override gets, as this process's configuration
// says; a default published by running workers takes precedence (they are the ones sending).
type SenderDefaults struct {
	// Rate is WABULK_RATE.
	Rate float64
	// Burst is WABULK_BURST; 0 means ceil(Rate/10).
	Burst int
	// From is KALEYRA_FROM, the sender of jobs that name none; empty when unknown.
	From string
}

// SetSenderRate overrides the rate (and, if burst > 0, the burst) of number for every worker,
// which follow within seconds. It returns the number normalised (E.164). Errors wrap
// store.ErrBadSender or store.ErrBadRate for bad input.
func (o *Ops) SetSenderRate(ctx context.Context, number string, rate float64, burst int) (string, error) {
	d, err := store.SenderDigits(number)
	if err != nil {
		return "", err
	}
	return "+" + d, o.ledger.SetSenderRate(ctx, d, rate, burst)
}

// ClearSenderRate puts number back on the default rate. It returns the number normalised.
func (o *Ops) ClearSenderRate(ctx context.Context, number string) (string, error) {
	d, err := store.SenderDigits(number)
	if err != nil {
		return "", err
	}
	return "+" + d, o.ledger.ClearSenderRate(ctx, d)
}

// backlogReaders bounds the concurrent Backlog calls of Senders (one script call per lane).
const backlogReaders = 8

// Senders lists every sender with an override, a live lane or a send in the last minute,
// sorted by number.
func (o *Ops) Senders(ctx context.Context, def SenderDefaults) ([]SenderInfo, error) {
	if pub, ok, err := o.ledger.DefaultSenderRate(ctx); err != nil {
		return nil, err
	} else if ok {
		def.Rate, def.Burst = pub.Rate, pub.Burst
	}
	if def.Burst <= 0 {
		def.Burst = ratelimit.DefaultBurst(def.Rate)
	}
	from := ""
	if def.From != "" {
		if d, err := store.SenderDigits(def.From); err == nil {
			from = d
		}
	}
	rates, err := o.ledger.SenderRates(ctx)
	if err != nil {
		return nil, err
	}
	sent, err := o.ledger.SentLastMinute(ctx)
	if err != nil {
		return nil, err
	}
	lanes, err := o.ledger.LiveLanes(ctx)
	if err != nil {
		return nil, err
	}
	backlogs, err := o.backlogs(ctx, lanes)
	if err != nil {
		return nil, err
	}

	rows := map[string]*SenderInfo{}
	row := func(part string) *SenderInfo {
		if part == store.DefaultSender && from != "" {
			part = from // the worker sends these from KALEYRA_FROM, under its rate
		}
		if r := rows[part]; r != nil {
			return r
		}
		r := &SenderInfo{Number: part, Rate: def.Rate, Burst: def.Burst}
		if part != store.DefaultSender {
			r.Number = "+" + part
			if ov, ok := rates[part]; ok {
				r.Rate, r.Burst, r.Override = ov.Rate, ov.Burst, true
				if r.Burst == 0 {
					r.Burst = ratelimit.DefaultBurst(ov.Rate)
				}
			}
		}
		rows[part] = r
		return r
	}
	for d := range rates {
		row(d)
	}
	for i, ln := range lanes {
		row(ln.Sender).Backlog += backlogs[i]
	}
	for d, n := range sent {
		row(d).SentLastMinute += n
	}
	out := make([]SenderInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b SenderInfo) int { return strings.Compare(a.Number, b.Number) })
	return out, nil
}

// backlogs reads each lane's backlog, a few at a time: one script call per lane.
func (o *Ops) backlogs(ctx context.Context, lanes []store.Lane) ([]int64, error) {
	out := make([]int64, len(lanes))
	errs := make([]error, len(lanes))
	sem := make(chan struct{}, backlogReaders)
	var wg sync.WaitGroup
	for i, ln := range lanes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = o.ledger.Backlog(ctx, ln.Name)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("backlog of %s: %w", lanes[i].Name, err)
		}
	}
	return out, nil
}
