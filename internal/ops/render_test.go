package ops

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/store"
)

func TestPrintableEscapesWhatATerminalWouldRun(t *testing.T) {
	for in, want := range map[string]string{
		"plain ref, ünïcode ‹›":       "plain ref, ünïcode ‹›",
		"\x1b[31mred\x1b]0;pwned\x07": `\x1b[31mred\x1b]0;pwned\x07`,
		"a\tb\nc\rd\x00e\x7f":         `a\tb\nc\rd\x00e\x7f`,
		"csi \u009b2J":                `csi \u009b2J`,
		"bad \xff byte, real \uFFFD":  `bad \xff byte, real ` + "\uFFFD",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every table the CLI prints escapes what came from outside: refs, Kaleyra's message and code,
// campaign and queue names read from Redis.
func TestTablesEscapeControlCharacters(t *testing.T) {
	const evil = "\x1b]0;pwned\x07"
	var b bytes.Buffer
	WriteDead(&b, []DeadEntry{{Campaign: "c" + evil, To: "+91" + evil, Code: "E1" + evil, Message: "bad " + evil,
		Ref: evil, Ref1: evil, Ref2: evil, Time: time.Unix(0, 0)}})
	WriteStatus(&b, Status{Queue: QueueCounts{Queue: "q" + evil}, Campaigns: []store.Counts{{Campaign: "c" + evil,
		DeadCodes: map[string]int64{"E" + evil: 1}}}})
	WriteSendResult(&b, SendResult{Campaign: "c" + evil, DeadByCode: map[string]int64{"X" + evil: 1},
		Examples: map[string][]DeadEntry{"X" + evil: {{To: "+91" + evil, Ref: evil}}}})
	WriteSenders(&b, []SenderInfo{{Number: "+91" + evil}})
	if out := b.String(); strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("a table prints control characters raw:\n%q", out)
	}
}
