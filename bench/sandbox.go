package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime/pprof"
	"sort"
	"sync/atomic"
	"time"

	"github.com/wabulk/wabulk/internal/sandbox"
)

// Account the sandboxes accept; the sender is the one number every job is sent from.
const (
	sid    = "bench-sid"
	apiKey = "bench-key-0123456789"
	sender = "+919000000001"
)

// fakeKaleyra is the real sandbox served by the benchmark's own http.Server, with an atomic
// count of calls so waiting for "N calls arrived" costs nothing (Stats copies maps).
type fakeKaleyra struct {
	sb    *sandbox.Server
	srv   *http.Server
	URL   string
	calls atomic.Int64
}

// startSandbox serves a sandbox with the given latency ± jitter and an unlimited balance. Its
// goroutines carry the pprof label role=sandbox, so the worker's profile can leave them out.
func startSandbox(latency, jitter time.Duration) (*fakeKaleyra, error) {
	return startSandboxFor(latency, jitter, sender)
}

// startSandboxFor is startSandbox with the given sender numbers on the account.
func startSandboxFor(latency, jitter time.Duration, senders ...string) (*fakeKaleyra, error) {
	sb, err := sandbox.New(sandbox.Config{SID: sid, APIKey: apiKey, Senders: senders,
		Latency: latency, Jitter: jitter, Balance: -1})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeKaleyra{sb: sb, URL: "http://" + ln.Addr().String()}
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.calls.Add(1)
			sb.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	pprof.Do(context.Background(), pprof.Labels("role", "sandbox"), func(context.Context) {
		go f.srv.Serve(ln)
	})
	return f, nil
}

func (f *fakeKaleyra) close() {
	f.srv.Close()
	f.sb.Close()
}

// reset clears the sandbox's counters and call log between runs.
func (f *fakeKaleyra) reset() {
	f.sb.Reset()
	f.calls.Store(0)
}

// waitCalls waits until n calls have arrived, or timeout.
func (f *fakeKaleyra) waitCalls(n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for f.calls.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d calls arrived within %v", f.calls.Load(), n, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// sortedCalls returns the call log in time order, and an error when any answer was not "ok"
// (a benchmark of failures would measure the wrong thing).
func (f *fakeKaleyra) sortedCalls() ([]sandbox.Call, error) {
	calls := f.sb.Calls()
	sort.Slice(calls, func(i, j int) bool { return calls[i].Time.Before(calls[j].Time) })
	bad := 0
	var first string
	for _, c := range calls {
		if c.Answer != sandbox.AnswerOK {
			if bad == 0 {
				first = c.Answer
			}
			bad++
		}
	}
	if bad > 0 {
		return calls, fmt.Errorf("%d of %d calls were not accepted (first: %s)", bad, len(calls), first)
	}
	return calls, nil
}

// callRate is calls per second from the first call to the n-th: startup and shutdown out.
func callRate(calls []sandbox.Call) float64 {
	if len(calls) < 2 {
		return 0
	}
	d := calls[len(calls)-1].Time.Sub(calls[0].Time)
	return float64(len(calls)-1) / d.Seconds()
}
