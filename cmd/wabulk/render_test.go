package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/inprocess"
	"github.com/wabulk/wabulk/internal/ops"
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
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every table the CLI prints escapes what came from outside: refs, Kaleyra's message and code,
// campaign and queue names read from Redis.
func TestEveryTableEscapesControlCharacters(t *testing.T) {
	const evil = "\x1b]0;pwned\x07"
	var b bytes.Buffer
	writeDead(&b, []ops.DeadEntry{{Campaign: "c" + evil, To: "+91" + evil, Code: "E1" + evil, Message: "bad " + evil,
		Ref: evil, Ref1: evil, Ref2: evil, Time: time.Unix(0, 0)}})
	writeStatus(&b, ops.Status{Queue: ops.QueueCounts{Queue: "q" + evil}, Campaigns: []store.CampaignInfo{{Counts: store.Counts{Campaign: "c" + evil,
		DeadCodes: map[string]int64{"E" + evil: 1}}, State: "running" + evil}}})
	writeSendResult(&b, inprocess.SendResult{Campaign: "c" + evil, DeadByCode: map[string]int64{"X" + evil: 1},
		Examples: map[string][]ops.DeadEntry{"X" + evil: {{To: "+91" + evil, Ref: evil}}}})
	writeSenders(&b, []ops.SenderInfo{{Number: "+91" + evil}})
	if out := b.String(); strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("a table prints control characters raw:\n%q", out)
	}
}

// An interrupted send says what is left and where it is: in the embedded Redis, gone with the
// process; in a real Redis, still queued for a worker.
func TestSendSummarySaysWhatIsLeftAndWhere(t *testing.T) {
	for _, tc := range []struct {
		embedded bool
		want     string
	}{{true, "gone with this process"}, {false, "wabulk worker"}} {
		var b bytes.Buffer
		res := inprocess.SendResult{Campaign: "c", Interrupted: true, Embedded: tc.embedded,
			Counts: store.Counts{Enqueued: 5, Completed: 2}}
		if err := writeSendResult(&b, res); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "3 jobs not finished") || !strings.Contains(b.String(), tc.want) {
			t.Errorf("embedded=%v: summary does not say 3 left and %q:\n%s", tc.embedded, tc.want, b.String())
		}
	}
}

// The status table shows what WhatsApp did with the accepted messages, and the callbacks it
// could not match.
func TestStatusTableShowsDeliveryAndUnmatched(t *testing.T) {
	var b bytes.Buffer
	st := ops.Status{Unmatched: 4, Campaigns: []store.CampaignInfo{{State: "done", Counts: store.Counts{Campaign: "c",
		Enqueued: 10, Completed: 9, Delivered: 7, Read: 3, Failed: 1, NotSent: 1, FailedCodes: map[string]int64{"131047": 1}}}}}
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"DELIVERED", "READ", "FAILED BY CODE", "131047=1", "4 delivery statuses", "unmatched"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`c\s+done\s+10\s+0\s+0\s+0\s+9\s+7\s+3\s+2\s`).MatchString(out) {
		t.Errorf("campaign row does not read enqueued 10, completed 9, delivered 7, read 3, failed 2:\n%s", out)
	}
}
