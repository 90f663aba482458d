package main

import (
	"fmt"
	"io"
	"time"

	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/internal/termline"
)

// sendProgress shows how far a send is on a status line (redrawn in place on a terminal, a plain
// line every few seconds elsewhere).
type sendProgress struct {
	line    *termline.Line
	before  store.Counts // the campaign's counts at the first update: a re-run adds to them
	started bool
	start   time.Time
	latest  store.Counts
}

// newSendProgress draws on w, in place when live; otherwise a plain line every `every` (default 2s).
func newSendProgress(w io.Writer, live bool, every time.Duration) *sendProgress {
	if every <= 0 {
		every = 2 * time.Second
	}
	return &sendProgress{line: termline.New(w, live, every), start: time.Now()}
}

func (p *sendProgress) update(c store.Counts) {
	if !p.started {
		p.before, p.started = c, true
	}
	p.latest = c
	if now := time.Now(); p.line.Due(now) {
		p.line.Show(p.message(now))
	}
}

func (p *sendProgress) message(now time.Time) string {
	c := p.latest
	el := now.Sub(p.start).Seconds()
	finished := c.Completed + c.Dead - p.before.Completed - p.before.Dead
	rate := float64(c.Completed-p.before.Completed) / max(el, 1e-9)
	msg := fmt.Sprintf("sent %d/%d  retrying %d  dead %d  active %d  waiting %d  %.1f msg/s", c.Completed, c.Enqueued,
		c.Retry, c.Dead, c.Active, c.Pending, rate)
	if left := c.Enqueued - c.Completed - c.Dead; finished > 0 && left > 0 {
		eta := time.Duration(float64(left) / (float64(finished) / el) * float64(time.Second))
		msg += "  ETA " + eta.Round(100*time.Millisecond).String()
	}
	return msg
}

// done ends a line drawn in place so what follows starts on its own line.
func (p *sendProgress) done() {
	if p.started {
		p.line.Done(p.message(time.Now()))
	}
}
