package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// Version is the build's version for wabulk_build_info; the wabulk command sets it from its
// -X main.version stamp.
var Version = "dev"

// The roles of wabulk_build_info.
const (
	RoleWorker = "worker"
	RoleServe  = "serve"
)

// pingTimeout bounds the PING behind wabulk_redis_up, like /readyz's.
const pingTimeout = time.Second

// RegisterProcess adds what every long-running process exports to reg: the Go and process
// collectors, wabulk_build_info for role, and Redis's health as this process sees it.
func RegisterProcess(reg prometheus.Registerer, role string, rdb redis.UniversalClient) {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: BuildInfo.Name, Help: BuildInfo.Help}, BuildInfo.Labels)
	info.WithLabelValues(role, Version).Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info, &redisCollector{rdb: rdb, up: RedisUp.Desc(), ping: RedisPing.Desc()})
}

// redisCollector pings Redis on each scrape.
type redisCollector struct {
	rdb      redis.UniversalClient
	up, ping *prometheus.Desc
}

func (c *redisCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up; ch <- c.ping }

func (c *redisCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	start := time.Now()
	err := c.rdb.Ping(ctx).Err()
	took := time.Since(start)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.ping, prometheus.GaugeValue, took.Seconds())
}
