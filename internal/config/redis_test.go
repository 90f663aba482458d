package config

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
)

// TestRedisClientIsAsynqsClientOnRESP2 holds RedisClient to asynq's MakeRedisClient for every
// kind of connection option: the same settings, Protocol 2.
func TestRedisClientIsAsynqsClientOnRESP2(t *testing.T) {
	tlsc := &tls.Config{ServerName: "redis.test"}
	common := func(o *redis.Options) []any {
		return []any{o.Network, o.Addr, o.Username, o.Password, o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize, o.TLSConfig}
	}
	for _, opt := range []asynq.RedisConnOpt{
		asynq.RedisClientOpt{Network: "unix", Addr: "/tmp/r.sock", Username: "u", Password: "p", DB: 3,
			DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second, PoolSize: 7, TLSConfig: tlsc},
		asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379"}, Username: "u", Password: "p", DB: 2,
			DialTimeout: time.Second, PoolSize: 5},
	} {
		got, err := RedisClient(opt)
		if err != nil {
			t.Fatal(err)
		}
		want := opt.MakeRedisClient().(*redis.Client)
		g := got.(*redis.Client).Options()
		if g.Protocol != 2 {
			t.Errorf("%T: protocol %d, want 2", opt, g.Protocol)
		}
		if a, b := common(g), common(want.Options()); !equalAny(a, b) {
			t.Errorf("%T: options %v, asynq's %v", opt, a, b)
		}
		got.Close()
		want.Close()
	}
	cl := asynq.RedisClusterClientOpt{Addrs: []string{"a:1", "b:2"}, MaxRedirects: 4, Username: "u", Password: "p",
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second, TLSConfig: tlsc}
	got, err := RedisClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want := cl.MakeRedisClient().(*redis.ClusterClient)
	defer want.Close()
	g, w := got.(*redis.ClusterClient).Options(), want.Options()
	if g.Protocol != 2 || !equalAny([]any{g.MaxRedirects, g.Username, g.Password, g.DialTimeout, g.ReadTimeout, g.WriteTimeout, g.TLSConfig, len(g.Addrs)},
		[]any{w.MaxRedirects, w.Username, w.Password, w.DialTimeout, w.ReadTimeout, w.WriteTimeout, w.TLSConfig, len(w.Addrs)}) {
		t.Errorf("cluster options %+v, asynq's %+v", g, w)
	}
	if _, err := RedisClient(nil); err == nil {
		t.Error("nil options accepted")
	}
}

func equalAny(a, b []any) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestRedisClientTalksToRedis runs asynq on a RESP2 client end to end: enqueue, inspect.
func TestRedisClientTalksToRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb, err := RedisClient(srv.ConnOpt(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("t", nil), asynq.TaskID("x")); err != nil {
		t.Fatal(err)
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo("default", "x")
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("task %+v, %v", info, err)
	}
	if p := rdb.(*redis.Client).Options().Protocol; p != 2 {
		t.Errorf("protocol %d", p)
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}
