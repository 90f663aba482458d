package inprocess

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/internal/httpapi"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/producer"
)

// receiverToken authenticates the in-process fake Kaleyra's callbacks to the in-process
// receiver; both live and die with this process on a loopback port.
const receiverToken = "inprocess-callback-token-0123456789"

// startReceiver serves `wabulk serve`'s API (its status-callback receiver is the part used) on a
// free loopback port, on the send's Redis, and returns the receiver's URL and how to stop it.
func startReceiver(cfg SendConfig) (url string, stop func(), err error) {
	// The receiver records in the worker's namespace, where the worker maps message ids.
	srv, err := httpapi.New(httpapi.Config{Redis: cfg.Worker.Redis, Tokens: []config.Secret{receiverToken},
		Producer: producer.Config{Queue: cmp.Or(cfg.Worker.Queue, defaults.Queue), Retention: cfg.Worker.Retention}}, nil)
	if err != nil {
		return "", nil, fmt.Errorf("callback receiver: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return "", nil, fmt.Errorf("callback receiver: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	return "http://" + ln.Addr().String() + "/v1/kaleyra/status", func() {
		cancel()
		<-done
		srv.Close()
	}, nil
}

// callbackPatience bounds the wait for the fake Kaleyra's last callbacks once the campaign is
// sent: they come after short random delays, and a receiver that refuses them is retried.
const callbackPatience = 10 * time.Second

// settleCallbacks waits until the fake Kaleyra has no callback left to post, ctx ends, or
// callbackPatience passes.
func settleCallbacks(ctx context.Context, sb *sandbox.Server) {
	deadline := time.Now().Add(callbackPatience)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st := sb.Stats(); st.Callbacks == nil || st.Callbacks.Pending == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
