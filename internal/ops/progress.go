package ops

import (
	"fmt"
	"io"
	"time"

	"github.com/wabulk/wabulk/internal/ledger"
)

// progress shows how far a send is: one line redrawn in place on a terminal (at most every
// 200ms), a plain line every few seconds elsewhere (logs, CI).
type progress struct {
	w      io.Writer
	live   bool
	every  time.Duration
	before ledger.Counts
	start  time.Time
	last   time.Time
	drawn  bool
	latest ledger.Counts
}

func newProgress(w io.Writer, live bool, every time.Duration, before ledger.Counts) *progress {
	if every <= 0 {
		every = 2 * time.Second
	}
	if live {
		every = 200 * time.Millisecond
	}
	now := time.Now()
	return &progress{w: w, live: live, every: every, before: before, start: now, last: now}
}

func (p *progress) update(c ledger.Counts) {
	p.latest = c
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.draw(now)
	}
}

func (p *progress) draw(now time.Time) {
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
	if p.live {
		fmt.Fprintf(p.w, "\r%s\x1b[K", msg)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, "progress:", msg)
}

// done ends a line drawn in place so what follows starts on its own line.
func (p *progress) done() {
	if p.drawn {
		p.draw(time.Now())
		fmt.Fprintln(p.w)
	}
}
