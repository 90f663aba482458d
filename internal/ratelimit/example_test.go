package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/ratelimit"
)

// Every worker process builds one Limiter on the shared Redis; together they send at most
// Rate messages per second from each sender.
func ExampleLimiter_Wait() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	l, err := ratelimit.New(rdb, ratelimit.Config{Rate: 80}) // WABULK_RATE; Burst defaults to 8
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	waited, err := l.Wait(ctx, "+919876543210")
	if err != nil {
		return // ctx ended: not a failed send, the job is simply not attempted yet
	}
	fmt.Println("send now, after", waited)
	st := l.Stats()
	fmt.Printf("%.2f Redis round trips per message\n", float64(st.RoundTrips)/float64(st.Tokens))
}
