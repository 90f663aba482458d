package inprocess

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
)

// TestDemoSummaryMatchesWhatTheSandboxReceived runs `wabulk demo`'s path end to end — embedded
// Redis, in-process worker, fake Kaleyra with its seeded faults — and checks the summary against
// the fake Kaleyra's own counts: every accepted message is counted sent once, every permanent
// answer is one dead letter of its code, every WA500 was retried (or dead after the budget).
func TestDemoSummaryMatchesWhatTheSandboxReceived(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	res, err := Demo(ctx, DemoOptions{Out: &out})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("demo took %v\n%s", time.Since(start), out.String())
	st := res.Sandbox
	if st == nil {
		t.Fatal("no sandbox stats in the result")
	}
	const recipients = 200
	if recipients != DemoRecipients || res.Enqueue.Enqueued != recipients || res.Enqueue.Rejected != 0 {
		t.Errorf("enqueue %+v, want %d enqueued, none rejected", res.Enqueue, recipients)
	}
	if res.Interrupted || res.Left() != 0 {
		t.Errorf("interrupted %v, left %d: the demo must drain", res.Interrupted, res.Left())
	}
	if res.Sent != st.Accepted {
		t.Errorf("summary sent %d, sandbox accepted %d", res.Sent, st.Accepted)
	}
	if d := st.Duplicates(); len(d) > 0 {
		t.Errorf("recipients accepted more than once: %v", d)
	}
	if res.Sent+res.Dead != recipients {
		t.Errorf("sent %d + dead %d != %d recipients", res.Sent, res.Dead, recipients)
	}
	for _, code := range []string{sandbox.AnswerLowBalance, sandbox.AnswerBadPayload} {
		if res.DeadByCode[code] != st.Answered[code] {
			t.Errorf("dead %s: summary %d, sandbox answered %d", code, res.DeadByCode[code], st.Answered[code])
		}
		if st.Answered[code] == 0 {
			t.Errorf("the seeded faults gave no %s: the demo should show some", code)
		}
	}
	if got, want := res.Retried+res.DeadByCode[sandbox.AnswerInternal], st.Answered[sandbox.AnswerInternal]; got != want {
		t.Errorf("retried %d + dead WA500 %d != sandbox WA500 answers %d", res.Retried, res.DeadByCode[sandbox.AnswerInternal], want)
	}
	if st.Received != res.Sent+res.Retried+res.Dead {
		t.Errorf("sandbox received %d calls, summary accounts for %d (sent+retried+dead)", st.Received, res.Sent+res.Retried+res.Dead)
	}
	// WhatsApp's verdicts, through the fake Kaleyra's callbacks and the in-process receiver: the
	// counts are what the sandbox drew for the accepted messages, each once.
	cb := st.Callbacks
	if cb == nil || cb.Pending != 0 || cb.Abandoned != 0 || cb.Messages != st.Accepted {
		t.Fatalf("callbacks %+v for %d accepted", cb, st.Accepted)
	}
	c := res.Counts
	var failed int64
	for _, n := range cb.Failed {
		failed += n
	}
	if c.Delivered != cb.Delivered || c.Read != cb.Read || c.Failed != failed || c.NotSent != cb.NotSent ||
		!maps.Equal(c.FailedCodes, cb.Failed) || c.Delivered == 0 || failed == 0 {
		t.Errorf("delivery counts %+v, sandbox drew %+v", c, cb)
	}
	if !strings.Contains(out.String(), "nothing survives the process") {
		t.Errorf("output does not say the Redis is in memory only:\n%s", out.String())
	}
	for code, ex := range res.Examples {
		if len(ex) == 0 || len(ex) > 3 {
			t.Errorf("%s: %d examples, want 1 to 3", code, len(ex))
		}
		for _, e := range ex {
			if !strings.Contains(e.To, "*") {
				t.Errorf("example recipient %q is not masked", e.To)
			}
		}
	}
}
