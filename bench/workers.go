package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/worker"
)

// pollInterval and delayedCheck are the bare server's asynq TaskCheckInterval and
// DelayedTaskCheckInterval: what older workers used for their asynq server (200ms, and 1s from
// the default 5s retry base).
const (
	pollInterval = 200 * time.Millisecond
	delayedCheck = time.Second
	// unboundRate is the WABULK_RATE of runs that measure cost, not the limit: high enough
	// never to bind (the limiter still runs, one script call per batch of up to 256 tokens).
	unboundRate = 1e6
)

func workerConfig(r *redisServer, sb *fakeKaleyra, conc int, rate float64) worker.Config {
	return worker.Config{Redis: r.connOpt(), Queue: queue, Concurrency: conc, Rate: rate, From: sender,
		Kaleyra: worker.KaleyraConfig{SID: sid, APIKey: apiKey, BaseURL: sb.URL, Timeout: 15 * time.Second}}
}

// inProcessWorker runs worker.Run (the real package, the real zap JSON logger writing to a
// file as `wabulk worker` writes to its stderr) with the pprof label role=worker on all of its
// goroutines; stop ends it as SIGTERM would.
type inProcessWorker struct {
	cancel context.CancelFunc
	errc   chan error
	log    *os.File
}

func startInProcessWorker(cfg worker.Config, logPath string) (*inProcessWorker, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	log, err := logging.New("info", f)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &inProcessWorker{cancel: cancel, errc: make(chan error, 1), log: f}
	pprof.Do(ctx, pprof.Labels("role", "worker"), func(ctx context.Context) {
		go func() { w.errc <- worker.Run(ctx, cfg, log) }()
	})
	return w, nil
}

func (w *inProcessWorker) stop() error {
	w.cancel()
	err := <-w.errc
	w.log.Close()
	return err
}

// bareServer is the baseline: asynq alone, with the worker's concurrency and poll settings,
// and a handler that POSTs the task's payload (the exact bytes the worker's client sends) to
// the same sandbox with the same headers through a net/http client tuned like the worker's.
// With keepResult the handler writes Kaleyra's answer as the task result.
type bareServer struct{ srv *asynq.Server }

func startBare(r *redisServer, sb *fakeKaleyra, conc int, keepResult bool) (*bareServer, error) {
	kc, err := kaleyra.New(kaleyra.Config{SID: sid, APIKey: apiKey, BaseURL: sb.URL})
	if err != nil {
		return nil, err
	}
	url := kc.URL(sender)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * conc
	tr.MaxIdleConnsPerHost = conc
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	h := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.Payload()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("api-key", apiKey)
		req.Header.Set("cache-control", "no-cache")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		var answer bytes.Buffer
		var into io.Writer = io.Discard
		if keepResult {
			into = &answer
		}
		io.Copy(into, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if keepResult {
			_, err = t.ResultWriter().Write(answer.Bytes())
		}
		return err
	})
	srv := asynq.NewServer(r.connOpt(), asynq.Config{Concurrency: conc, Queues: map[string]int{queue: 1},
		TaskCheckInterval: pollInterval, DelayedTaskCheckInterval: delayedCheck, LogLevel: asynq.WarnLevel})
	if err := srv.Start(h); err != nil {
		return nil, err
	}
	return &bareServer{srv: srv}, nil
}

func (b *bareServer) stop() { b.srv.Shutdown() }

// workerProc is one `wabulk worker` process of the built binary, its stderr (the JSON log) in
// a file, its memory sampled from /proc while it runs.
type workerProc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	maxRSS atomic.Int64 // KiB, highest VmRSS sampled
	hwm    atomic.Int64 // KiB, highest VmHWM read
	err    error
}

// workerEnv is the environment of `wabulk worker` against r and sb.
func workerEnv(r *redisServer, sb *fakeKaleyra, conc int, rate float64) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"WABULK_REDIS_URL=" + r.url(), "WABULK_QUEUE=" + queue,
		"KALEYRA_SID=" + sid, "KALEYRA_API_KEY=" + apiKey, "KALEYRA_BASE_URL=" + sb.URL, "KALEYRA_FROM=" + sender,
		"WABULK_CONCURRENCY=" + strconv.Itoa(conc), "WABULK_RATE=" + strconv.FormatFloat(rate, 'g', -1, 64),
		"WABULK_METRICS_ADDR=", "WABULK_LOG_LEVEL=info",
	}
}

func startWorkerProc(bin string, env []string, logPath string) (*workerProc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &workerProc{cmd: exec.Command(bin, "worker"), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	go p.sample()
	return p, nil
}

func (p *workerProc) sample() {
	sampleMemory(p.cmd.Process.Pid, p.done, 50*time.Millisecond, &p.maxRSS, &p.hwm)
}

// sampleMemory reads /proc/<pid>/status every period until done: the highest VmRSS seen and
// the latest VmHWM (the kernel's high-water mark, monotonic). Peak RSS comes from here, not
// from wait4's rusage: for a child started by os/exec (vfork, then exec) Linux carries the
// parent's high-water mark into the child's ru_maxrss, so it would report the benchmark's own
// memory.
func sampleMemory(pid int, done <-chan struct{}, period time.Duration, maxRSS, hwm *atomic.Int64) {
	path := filepath.Join("/proc", strconv.Itoa(pid), "status")
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			if rss := statusKiB(b, "VmRSS:"); rss > maxRSS.Load() {
				maxRSS.Store(rss)
			}
			if h := statusKiB(b, "VmHWM:"); h > hwm.Load() {
				hwm.Store(h)
			}
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// statusKiB reads a "Key:   123 kB" line of /proc/<pid>/status.
func statusKiB(status []byte, key string) int64 {
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// stop sends SIGTERM, waits for the exit and returns the process's peak RSS in KiB (the last
// VmHWM sampled).
func (p *workerProc) stop(timeout time.Duration) (int64, error) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return 0, fmt.Errorf("worker %d did not exit within %v of SIGTERM", p.cmd.Process.Pid, timeout)
	}
	if p.err != nil {
		return 0, fmt.Errorf("worker exited: %w", p.err)
	}
	return p.hwm.Load(), nil
}

// parallel runs f(0..n-1) on conc goroutines and returns the first error.
func parallel(n, conc int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
