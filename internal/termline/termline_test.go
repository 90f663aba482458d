package termline

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLiveLineIsRedrawnInPlaceAndEnded(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, true, 0)
	l.Show("1 of 3")
	l.Print("line 2: bad number")
	l.Show("2 of 3")
	l.Done("3 of 3")
	want := "\r1 of 3\x1b[K\r\x1b[Kline 2: bad number\n\r2 of 3\x1b[K\r3 of 3\x1b[K\n"
	if b.String() != want {
		t.Fatalf("got %q\nwant %q", b.String(), want)
	}
}

func TestPlainLinesAreThrottledAndNeedNoEnding(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, false, time.Second)
	start := l.last
	if l.Due(start.Add(500 * time.Millisecond)) {
		t.Fatal("due before the interval")
	}
	if !l.Due(start.Add(time.Second)) || l.Due(start.Add(1500*time.Millisecond)) {
		t.Fatal("want due once per interval")
	}
	l.Show("half")
	l.Done("all")
	if got := b.String(); got != "progress: half\n" || strings.Contains(got, "\r") {
		t.Fatalf("got %q", got)
	}
	if IsTerminal(&b) {
		t.Fatal("a buffer is not a terminal")
	}
}
