package ops

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
	var sum bytes.Buffer
	if err := WriteSendResult(&sum, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum.String(), "gone with this process") || !strings.Contains(out.String(), "interrupted") {
		t.Errorf("output does not say what was left and where:\n%s\n%s", out.String(), sum.String())
	}
	if res.Sent != res.Sandbox.Accepted {
		t.Errorf("sent %d, sandbox accepted %d", res.Sent, res.Sandbox.Accepted)
	}
}
