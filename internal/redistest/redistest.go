// Package redistest gives tests a real redis-server of their own.
//
// Each call to Start launches redis-server from PATH on a unix socket in a fresh temporary
// directory and stops it when the test ends. Set WABULK_TEST_REDIS_URL to point the tests at an
// existing server instead; its database is flushed before each test, so never point it at data you
// want to keep. Without redis-server and without that variable the tests fail with a message that
// says how to install one: they never skip silently.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable that points tests at an existing Redis instead of a fresh server.
const EnvURL = "WABULK_TEST_REDIS_URL"

// Server is one Redis a test talks to.
type Server struct {
	// URL is the server's address in the form WABULK_REDIS_URL takes.
	URL string
	// Addr is host:port for TCP servers, empty for unix sockets.
	Addr string
	// Dir holds the server's files (socket, AOF, log); empty for an external server.
	Dir string

	cmd  *exec.Cmd
	args []string
}

// Options change how Start runs redis-server.
type Options struct {
	// TCP listens on a free 127.0.0.1 port instead of a unix socket (for other processes and
	// tools that need host:port). Default false.
	TCP bool
	// AOF turns on the append-only file so data survives Restart. Default false.
	AOF bool
	// Extra are more redis-server arguments (e.g. "--maxclients", "10000"). Default none.
	Extra []string
}

// Start gives the test a real Redis: a fresh redis-server, or the one WABULK_TEST_REDIS_URL names.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		s := &Server{URL: u}
		c := s.Client(t)
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			t.Fatalf("redistest: %s=%s: %v", EnvURL, u, err)
		}
		return s
	}
	s, err := Launch(o)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Launch starts a fresh redis-server as StartWith does, for programs that are not tests (the
// benchmark); Close stops it and removes its files.
func Launch(o Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install -y redis-server; " +
			"macOS: brew install redis), run `make test`, which installs it, or set " + EnvURL + " to a throwaway Redis")
	}
	// Unix socket paths are limited to ~104 bytes, so the directory is short, not t.TempDir().
	dir, err := os.MkdirTemp("", "wr")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir}
	s.args = []string{"--dir", dir, "--save", "", "--logfile", filepath.Join(dir, "redis.log"),
		"--databases", "4", "--daemonize", "no"}
	if o.AOF {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	if o.TCP {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr + "/0"
		s.args = append(s.args, "--bind", "127.0.0.1", "--port", strconv.Itoa(port))
	} else {
		sock := filepath.Join(dir, "redis.sock")
		s.URL = "redis-socket://" + sock
		s.args = append(s.args, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700")
	}
	s.args = append(s.args, o.Extra...)
	if err := s.launch(bin); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() {
	s.Stop()
	if s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}

// Pid is the server process's id (0 for an external server), for CPU accounting.
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) launch(bin string) error {
	cmd := exec.Command(bin, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Stop()
	log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return fmt.Errorf("redis-server did not answer within 10s; its log:\n%s", log)
}

func (s *Server) ping() error {
	opt, err := redis.ParseURL(s.goRedisURL())
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// goRedisURL turns the asynq-style redis-socket:// URL into go-redis's unix:// form.
func (s *Server) goRedisURL() string {
	if p, ok := strings.CutPrefix(s.URL, "redis-socket://"); ok {
		return "unix://" + p
	}
	return s.URL
}

// Client returns a go-redis client on the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.goRedisURL())
	if err != nil {
		t.Fatalf("redistest: parse %q: %v", s.URL, err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// ConnOpt returns the asynq connection options for the server.
func (s *Server) ConnOpt(t testing.TB) asynq.RedisConnOpt {
	t.Helper()
	opt, err := asynq.ParseRedisURI(s.URL)
	if err != nil {
		t.Fatalf("redistest: parse %q: %v", s.URL, err)
	}
	return opt
}

// Stop kills the server (SIGKILL: like a crash; with AOF on, what was fsynced survives).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts it again on the same address and directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.args == nil {
		t.Fatalf("redistest: cannot restart an external server (%s)", EnvURL)
	}
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	if err := s.launch(bin); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

// Info returns one field of INFO (e.g. "total_commands_processed"), for tests that count commands.
func (s *Server) Info(t testing.TB, section, field string) string {
	t.Helper()
	out, err := s.Client(t).Info(context.Background(), section).Result()
	if err != nil {
		t.Fatalf("redistest: INFO %s: %v", section, err)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
