package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of its own for one test: masters redis-server processes on free
// 127.0.0.1 ports, no replicas, every slot covered.
type Cluster struct {
	// Nodes are the masters' host:port addresses, in the order they were created.
	Nodes []string
	// Dir holds one subdirectory per node (nodes.conf, redis.log).
	Dir string

	procs []clusterProc
}

// clusterProc is one node's process and a channel closed once it has exited and been reaped.
type clusterProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// clusterStartTimeout bounds how long StartCluster waits for every node to say cluster_state:ok.
const clusterStartTimeout = 30 * time.Second

// StartCluster starts a Redis Cluster of masters (≥ 3, Redis's minimum) masters without replicas:
// one redis-server per master with cluster mode on, joined by `redis-cli --cluster create`. It
// returns once CLUSTER INFO says cluster_state:ok on every node, and stops the servers and removes
// their files when the test ends. The test is skipped, with a message that says what to install,
// when redis-cli is not on PATH; it fails when redis-server is not. WABULK_TEST_REDIS_URL does
// not apply: a cluster is always made fresh.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, asked for %d", masters)
	}
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install -y redis-server; " +
			"macOS: brew install redis) or run `make test`, which installs it")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redistest: SKIPPING the Redis Cluster test: redis-cli is not on PATH and `redis-cli --cluster create` " +
			"makes the cluster. Install it (Debian/Ubuntu: apt-get install -y redis-tools, which redis-server " +
			"pulls in; macOS: brew install redis) or run scripts/ensure-deps as root")
	}
	dir, err := os.MkdirTemp("", "wrc")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := &Cluster{Dir: dir}
	t.Cleanup(c.Close)
	taken := map[int]bool{}
	for i := range masters {
		addr, p, err := startClusterNode(server, filepath.Join(dir, strconv.Itoa(i)), taken)
		if err != nil {
			t.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		c.Nodes = append(c.Nodes, addr)
		c.procs = append(c.procs, p)
	}
	args := append([]string{"--cluster", "create"}, c.Nodes...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitOK(ctx, masters); err != nil {
		t.Fatalf("redistest: cluster of %s: %v", c.Addrs(), err)
	}
	return c
}

// startClusterNode launches one cluster-enabled redis-server in dir on a free port whose cluster
// bus port (port+10000) is free too, and waits until it answers PING. A port another process
// grabs between the check and the bind is given up and another one tried.
func startClusterNode(bin, dir string, taken map[int]bool) (string, clusterProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", clusterProc{}, err
	}
	var lastErr error
	for range 20 {
		port, err := freeClusterPort(taken)
		if err != nil {
			return "", clusterProc{}, err
		}
		taken[port] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"), "--daemonize", "no")
		if err := cmd.Start(); err != nil {
			return "", clusterProc{}, fmt.Errorf("start redis-server: %w", err)
		}
		p := clusterProc{cmd: cmd, exited: make(chan struct{})}
		go func() { cmd.Wait(); close(p.exited) }()
		if lastErr = waitPing(addr, p.exited); lastErr == nil {
			return addr, p, nil
		}
		cmd.Process.Kill()
		<-p.exited
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		if !strings.Contains(string(log), "in use") {
			return "", clusterProc{}, fmt.Errorf("redis-server on %s: %v; its log:\n%s", addr, lastErr, log)
		}
		os.Remove(filepath.Join(dir, "redis.log"))
		os.Remove(filepath.Join(dir, "nodes.conf"))
	}
	return "", clusterProc{}, fmt.Errorf("no free port after 20 tries: %v", lastErr)
}

// freeClusterPort picks a port in 20000–29999 that nothing listens on, nor on port+10000 (the
// cluster bus). The range keeps clear of Redis's 6379/16379 and of most ephemeral ports.
func freeClusterPort(taken map[int]bool) (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(10000)
		if taken[p] || taken[p+10000] || taken[p-10000] {
			continue
		}
		if portFree(p) && portFree(p+10000) {
			return p, nil
		}
	}
	return 0, errors.New("no free port pair (p, p+10000) in 20000-29999")
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// waitPing waits up to 10 s for addr to answer PING; it gives up early when the process exits.
func waitPing(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING within 10s: %v", err)
}

// waitOK waits until every node says cluster_state:ok and knows all masters.
func (c *Cluster) waitOK(ctx context.Context, masters int) error {
	var last string
	for {
		ok := true
		for _, addr := range c.Nodes {
			info, err := nodeCmd(ctx, addr, func(ctx context.Context, n *redis.Client) (string, error) {
				return n.ClusterInfo(ctx).Result()
			})
			if err != nil {
				ok, last = false, fmt.Sprintf("%s: %v", addr, err)
				break
			}
			if infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_known_nodes") != strconv.Itoa(masters) ||
				infoField(info, "cluster_slots_assigned") != "16384" {
				ok, last = false, fmt.Sprintf("%s: CLUSTER INFO\n%s", addr, info)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ok within %v; last seen %s", clusterStartTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nodeCmd runs f on a plain (non-cluster) client of one node.
func nodeCmd[T any](ctx context.Context, addr string, f func(context.Context, *redis.Client) (T, error)) (T, error) {
	n := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer n.Close()
	return f(ctx, n)
}

func infoField(info, field string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Addrs is the masters' addresses separated by commas: the value of WABULK_REDIS_CLUSTER.
func (c *Cluster) Addrs() string { return strings.Join(c.Nodes, ",") }

// Client returns a go-redis cluster client on the cluster (RESP2, as wabulk's own), closed when
// the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Nodes, Protocol: 2})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Node returns a plain client on one node (an address of Nodes), closed when the test ends: to
// look at what that master holds (KEYS, EXISTS, DBSIZE) without the cluster client's routing.
func (c *Cluster) Node(t testing.TB, addr string) *redis.Client {
	t.Helper()
	n := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	t.Cleanup(func() { n.Close() })
	return n
}

// Slot is key's hash slot as the cluster computes it (CLUSTER KEYSLOT: the {hash tag} if any).
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	slot, err := nodeCmd(context.Background(), c.Nodes[0], func(ctx context.Context, n *redis.Client) (int64, error) {
		return n.ClusterKeySlot(ctx, key).Result()
	})
	if err != nil {
		t.Fatalf("redistest: CLUSTER KEYSLOT %s: %v", key, err)
	}
	return int(slot)
}

// MasterOf returns the address of the master that serves key's slot, as CLUSTER NODES says.
func (c *Cluster) MasterOf(t testing.TB, key string) string {
	t.Helper()
	slot := c.Slot(t, key)
	addr, err := c.masterOfSlot(slot)
	if err != nil {
		t.Fatalf("redistest: master of %s (slot %d): %v", key, slot, err)
	}
	return addr
}

// masterOfSlot reads CLUSTER NODES. Each line is
// "<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot|lo-hi>…";
// importing/migrating entries ("[slot->-id]") are skipped: the cluster is never resharded.
func (c *Cluster) masterOfSlot(slot int) (string, error) {
	out, err := nodeCmd(context.Background(), c.Nodes[0], func(ctx context.Context, n *redis.Client) (string, error) {
		return n.ClusterNodes(ctx).Result()
	})
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && a <= slot && slot <= b {
				return addr, nil
			}
		}
	}
	return "", fmt.Errorf("no master serves slot %d in CLUSTER NODES:\n%s", slot, out)
}

// Close stops every node (SIGKILL) and removes the cluster's files.
func (c *Cluster) Close() {
	for _, p := range c.procs {
		p.cmd.Process.Kill()
	}
	for _, p := range c.procs {
		<-p.exited
	}
	c.procs = nil
	if c.Dir != "" {
		os.RemoveAll(c.Dir)
	}
}
