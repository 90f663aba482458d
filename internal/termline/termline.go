// Package termline shows how far a long run is: one status line redrawn in place on a terminal,
// or a plain "progress: …" line every few seconds where output goes to a pipe or a file (logs,
// CI). `wabulk enqueue` and `wabulk send` both use it.
package termline

import (
	"fmt"
	"io"
	"os"
	"time"
)

// IsTerminal reports whether w is a character device (a terminal), where tables and live
// displays go; anything else (a pipe, a file) gets plain lines.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Line is a status line.
type Line struct {
	w     io.Writer
	live  bool
	every time.Duration
	last  time.Time
	drawn bool
}

// New returns a status line on w: redrawn in place at most every 200 ms when live, else printed
// at most once per every (default 5 s).
func New(w io.Writer, live bool, every time.Duration) *Line {
	if every <= 0 {
		every = 5 * time.Second
	}
	if live {
		every = 200 * time.Millisecond
	}
	return &Line{w: w, live: live, every: every, last: time.Now()}
}

// Live reports whether the line is redrawn in place.
func (l *Line) Live() bool { return l.live }

// Due reports whether it is time to show the line again, and if so starts the next interval.
func (l *Line) Due(now time.Time) bool {
	if now.Sub(l.last) < l.every {
		return false
	}
	l.last = now
	return true
}

// Show draws msg: in place when live, as a "progress:" line otherwise.
func (l *Line) Show(msg string) {
	if l.live {
		fmt.Fprintf(l.w, "\r%s\x1b[K", msg)
		l.drawn = true
		return
	}
	fmt.Fprintln(l.w, "progress:", msg)
}

// Print writes s on a line of its own, first clearing a line drawn in place.
func (l *Line) Print(s string) {
	if l.drawn {
		fmt.Fprint(l.w, "\r\x1b[K")
		l.drawn = false
	}
	fmt.Fprintln(l.w, s)
}

// Done shows final when a line was drawn in place and ends it, so what follows starts on its
// own line.
func (l *Line) Done(final string) {
	if l.drawn {
		l.Show(final)
		fmt.Fprintln(l.w)
		l.drawn = false
	}
}
