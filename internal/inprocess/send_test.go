package inprocess

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

// cancelOn is an io.Writer that cancels a context once the text written so far contains a word.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	word   string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.word) {
		c.cancel()
	}
	return len(p), nil
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// numbers are the campaign's recipients.
var numbers = []string{"+919876543210", "+919876543211", "+919876543212", "+14155550123", "+447911123456"}

// TestSendInterruptedStopsCleanlyAndSaysWhatIsLeft is Ctrl-C during `wabulk send`: the worker
// stops, the result is marked interrupted and the summary says what was left and where.
func TestSendInterruptedStopsCleanlyAndSaysWhatIsLeft(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{word: "enqueued 5", cancel: cancel}
	csv := "to,type,media_link\n" + strings.Join(numbers, ",image,https://x.test/a.jpg\n") + ",image,https://x.test/a.jpg\n"
	start := time.Now()
	res, err := Send(ctx, SendConfig{
		Campaign:      "interrupted",
		Rows:          producer.ReadCSV(strings.NewReader(csv)),
		Worker:        worker.Config{Queue: "q", Concurrency: 1, Rate: 1, Burst: 1, ShutdownTimeout: 2 * time.Second},
		EmbeddedRedis: true,
		Sandbox:       &sandbox.Config{Balance: -1, Latency: 50 * time.Millisecond},
		Out:           out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Left() == 0 || res.Enqueue.Enqueued != 5 {
		t.Fatalf("result %+v: want interrupted with jobs left", res)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopping took %v", d)
	}
	if !res.Embedded || !strings.Contains(out.String(), "interrupted") {
		t.Errorf("result embedded=%v, output does not say it was interrupted:\n%s", res.Embedded, out.String())
	}
	if res.Sent != res.Sandbox.Accepted {
		t.Errorf("sent %d, sandbox accepted %d", res.Sent, res.Sandbox.Accepted)
	}
}
