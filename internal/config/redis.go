package config

import (
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RedisClient makes the Redis client for o with the settings asynq's MakeRedisClient gives it,
// but speaking RESP2. wabulk uses nothing that needs RESP3, and go-redis checks every RESP3
// reply for push notifications, which cost the worker several percent of its CPU per message
// (the CPU profile in bench/RESULTS.md). Every wabulk process makes its clients here, and the
// asynq servers, clients and inspectors it runs share them.
func RedisClient(o asynq.RedisConnOpt) (redis.UniversalClient, error) {
	switch o := o.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{Network: o.Network, Addr: o.Addr, Username: o.Username,
			Password: o.Password, DB: o.DB, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout,
			WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, Protocol: 2}), nil
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword, Username: o.Username,
			Password: o.Password, DB: o.DB, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout,
			WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, Protocol: 2}), nil
	case asynq.RedisClusterClientOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.Addrs, MaxRedirects: o.MaxRedirects,
			Username: o.Username, Password: o.Password, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout,
			WriteTimeout: o.WriteTimeout, TLSConfig: o.TLSConfig, Protocol: 2}), nil
	case nil:
		return nil, fmt.Errorf("no Redis connection options")
	}
	// Other implementations of asynq.RedisConnOpt: as asynq makes them.
	if c, ok := o.MakeRedisClient().(redis.UniversalClient); ok {
		return c, nil
	}
	return nil, fmt.Errorf("unsupported Redis connection options %T", o)
}
