// Package proctest runs the real wabulk binary in tests where processes are the point: exit
// codes, SIGTERM, kill -9.
package proctest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// Binary builds ./cmd/wabulk once per test process (with -race when the tests run with it) and
// returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wabulk-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "wabulk")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/wabulk")...)
		cmd.Dir = root
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("proctest: go build ./cmd/wabulk: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// Proc is a running wabulk process.
type Proc struct {
	Cmd    *exec.Cmd
	stdout SyncBuffer
	stderr SyncBuffer
	done   chan struct{}
	err    error
}

// Start runs wabulk with args and exactly env (plus PATH and HOME), and kills it when the test ends.
func Start(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(Binary(t), args...), done: make(chan struct{})}
	p.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.Cmd.Stdout = &p.stdout
	p.Cmd.Stderr = &p.stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("proctest: start: %v", err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Run runs wabulk to completion with stdin and returns stdout, stderr and the exit code.
func Run(t testing.TB, env []string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("proctest: run: %v", err)
	}
	return o.String(), e.String(), code
}

// Signal sends sig (syscall.SIGTERM, syscall.SIGKILL …) to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("proctest: signal %v: %v", sig, err)
	}
}

// Wait waits up to d for the process to exit and returns its exit code (-1 when killed by a
// signal); it fails the test if the process is still running after d.
func (p *Proc) Wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("proctest: process still running after %v; stderr:\n%s", d, p.Stderr())
	}
	if p.Cmd.ProcessState == nil {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stdout and Stderr return what the process printed so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr returns what the process printed on stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// SyncBuffer is a bytes.Buffer that many goroutines may write (a process's output, a logger).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr returns a 127.0.0.1 address with a port nothing listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proctest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
