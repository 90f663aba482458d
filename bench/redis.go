package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
)

// redisServer is a redis-server of the benchmark's own (internal/redistest starts it) on a unix
// socket in a temporary directory: never the machine's Redis, and no TCP stack between it and
// the clients.
type redisServer struct {
	*redistest.Server
	sock    string
	version string
	rdb     *redis.Client
}

func startRedis() (*redisServer, error) {
	srv, err := redistest.Launch(redistest.Options{Extra: []string{"--maxclients", "10000"}})
	if err != nil {
		return nil, fmt.Errorf("%w (make bench installs it through `make deps`)", err)
	}
	s := &redisServer{Server: srv, sock: strings.TrimPrefix(srv.URL, "redis-socket://")}
	s.rdb = redis.NewClient(&redis.Options{Network: "unix", Addr: s.sock})
	if info, err := s.rdb.Info(context.Background(), "server").Result(); err == nil {
		s.version = infoField(info, "redis_version")
	}
	return s, nil
}

// url is the server in WABULK_REDIS_URL's form.
func (s *redisServer) url() string { return s.URL }

func (s *redisServer) connOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Network: "unix", Addr: s.sock}
}

func (s *redisServer) flush(ctx context.Context) error { return s.rdb.FlushAll(ctx).Err() }

func (s *redisServer) stop() {
	s.rdb.Close()
	s.Close()
}

// cmdStats is INFO commandstats (calls per command, commands run inside scripts included) and
// total_commands_processed.
type cmdStats struct {
	calls map[string]int64
	total int64
}

func (s *redisServer) stats(ctx context.Context) (cmdStats, error) {
	info, err := s.rdb.Info(ctx, "commandstats", "stats").Result()
	if err != nil {
		return cmdStats{}, err
	}
	st := cmdStats{calls: map[string]int64{}}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		if name, rest, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "cmdstat_") {
			calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
			st.calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(calls, 10, 64)
		}
	}
	st.total, _ = strconv.ParseInt(infoField(info, "total_commands_processed"), 10, 64)
	return st, nil
}

// sub is b − a: what ran between two snapshots (the two INFO calls themselves included).
func (b cmdStats) sub(a cmdStats) cmdStats {
	d := cmdStats{calls: map[string]int64{}, total: b.total - a.total}
	for k, v := range b.calls {
		if n := v - a.calls[k]; n > 0 {
			d.calls[k] = n
		}
	}
	return d
}

// errorCount is how many commands Redis has answered with the error code (INFO errorstats), e.g.
// NOSCRIPT.
func (s *redisServer) errorCount(ctx context.Context, code string) (int64, error) {
	info, err := s.rdb.Info(ctx, "errorstats").Result()
	if err != nil {
		return 0, err
	}
	v, _ := strings.CutPrefix(infoField(info, "errorstat_"+code), "count=")
	n, _ := strconv.ParseInt(v, 10, 64)
	return n, nil
}

func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// monitor counts commands as clients send them (MONITOR), which INFO cannot split: the
// rate limiter's EVALSHA apart from asynq's and the ledger's, and round trips apart from the
// commands scripts run inside Redis.
type monitor struct {
	conn net.Conn
	done chan struct{}

	mu      sync.Mutex
	clients int64            // commands clients sent (not run by scripts)
	limiter int64            // EVALSHA on a rate-limit key (":rl:{")
	byName  map[string]int64 // client commands by name
	scripts map[string]int64 // EVALSHA/EVAL by the last part of their first two keys, e.g. "pending,paused"; nil: not counted
	// gated: count only between two `INFO commandstats stats` (redisServer.stats), so the counts
	// cover exactly the interval INFO's deltas cover; gate is 0 before the first, 1 between, 2 after.
	gated bool
	gate  int
}

// gateOnStats makes the monitor count only what Redis runs between the next two stats calls.
func (m *monitor) gateOnStats() {
	m.mu.Lock()
	m.gated = true
	m.mu.Unlock()
}

// countScripts makes the monitor count script calls by their keys from now on (scriptCounts).
func (m *monitor) countScripts() {
	m.mu.Lock()
	m.scripts = map[string]int64{}
	m.mu.Unlock()
}

func (s *redisServer) monitor() (*monitor, error) {
	conn, err := net.Dial("unix", s.sock)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	m := &monitor{conn: conn, done: make(chan struct{}), byName: map[string]int64{}}
	r := bufio.NewReaderSize(conn, 1<<20)
	first, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "+OK") {
		conn.Close()
		return nil, fmt.Errorf("MONITOR: %q %v", first, err)
	}
	go func() {
		defer close(m.done)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
			m.count(line)
		}
	}()
	return m, nil
}

// count reads one MONITOR line: `+<ts> [<db> <client>] "cmd" "arg" …`. Commands run by a
// script show "lua" as the client.
func (m *monitor) count(line []byte) {
	s := string(line)
	open := strings.IndexByte(s, '[')
	end := strings.IndexByte(s, ']')
	if open < 0 || end < open {
		return
	}
	if strings.Contains(s[open:end], " lua") {
		return
	}
	rest := s[end+1:]
	q1 := strings.IndexByte(rest, '"')
	if q1 < 0 {
		return
	}
	q2 := strings.IndexByte(rest[q1+1:], '"')
	if q2 < 0 {
		return
	}
	name := strings.ToLower(rest[q1+1 : q1+1+q2])
	m.mu.Lock()
	if m.gated {
		if name == "info" && strings.Contains(rest, `"commandstats" "stats"`) {
			m.gate++
		}
		if m.gate != 1 || name == "info" {
			m.mu.Unlock()
			return
		}
	}
	m.clients++
	m.byName[name]++
	if name == "evalsha" || name == "eval" {
		if strings.Contains(rest, ":rl:{") {
			m.limiter++
		}
		if m.scripts != nil {
			m.scripts[scriptKeys(rest[q1+1+q2+1:])]++
		}
	}
	m.mu.Unlock()
}

// scriptKeys names a script call by its first two keys, each cut to what follows its hash tag
// ("asynq:{q}:pending" → "pending"): args is the MONITOR text after the command's name,
// `"sha" "numkeys" "key1" "key2" …`.
func scriptKeys(args string) string {
	var f []string
	for len(f) < 4 {
		i := strings.IndexByte(args, '"')
		if i < 0 {
			break
		}
		j := strings.IndexByte(args[i+1:], '"')
		if j < 0 {
			break
		}
		f = append(f, args[i+1:i+1+j])
		args = args[i+1+j+1:]
	}
	if len(f) < 3 {
		return "?"
	}
	n, _ := strconv.Atoi(f[1])
	var ks []string
	for _, k := range f[2:min(len(f), 2+n)] {
		if i := strings.LastIndex(k, "}:"); i >= 0 {
			k = k[i+2:]
		}
		if i := strings.IndexByte(k, ':'); i >= 0 {
			k = k[:i] // "t:<id>" and the like
		}
		ks = append(ks, k)
	}
	return strings.Join(ks, ",")
}

// scriptCounts returns the script calls by keys (after stop).
func (m *monitor) scriptCounts() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.scripts)
}

// stop ends the MONITOR connection and returns its counts.
func (m *monitor) stop() (clients, limiter int64, byName map[string]int64) {
	// Let the lines already sent arrive before closing (a gated monitor: until the second stats
	// call's line, or 5 s).
	time.Sleep(200 * time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		m.mu.Lock()
		waiting := m.gated && m.gate < 2
		m.mu.Unlock()
		if !waiting {
			break
		}
	}
	m.conn.Close()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clients, m.limiter, m.byName
}

// cpu is redis-server's CPU time so far (utime + stime of /proc/<pid>/stat).
func (s *redisServer) cpu() time.Duration {
	return procCPU(s.Pid())
}
