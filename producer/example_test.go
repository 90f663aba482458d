package producer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// exampleRedis starts a throwaway redis-server for the examples (tests use redistest, which
// needs a *testing.T). Real callers pass their WABULK_REDIS_URL to asynq.ParseRedisURI.
func exampleRedis() (asynq.RedisConnOpt, func()) {
	dir, _ := os.MkdirTemp("", "wx")
	sock := filepath.Join(dir, "r.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		panic("examples need redis-server on PATH: " + err.Error())
	}
	opt := asynq.RedisClientOpt{Network: "unix", Addr: sock}
	c := asynq.NewClient(opt)
	for deadline := time.Now().Add(10 * time.Second); c.Ping() != nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	return opt, func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
}

// Send enqueues one message; several numbers in `to` become one job each.
func ExampleProducer_Send() {
	redis, stop := exampleRedis()
	defer stop()
	p, err := producer.New(redis, producer.Config{DefaultFrom: "+919800000001"})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	msg := job.Fields{To: "+91 98765 43210, 919876543211", Type: "image", MediaLink: "https://example.com/offer.jpg",
		Caption: "Spring offer", Ref: "order-17"}
	outcomes, err := p.Send(context.Background(), "spring-2026", msg)
	if err != nil {
		panic(err) // Redis failed; invalid messages are outcomes, not errors
	}
	for _, o := range outcomes {
		fmt.Println(o.Status, o.TaskID)
	}
	again, _ := p.Send(context.Background(), "spring-2026", msg)
	fmt.Println(again[0].Status)
	// Output:
	// enqueued spring-2026:919800000001:919876543210
	// enqueued spring-2026:919800000001:919876543211
	// duplicate
}

// Campaign enqueues the rows of a campaign file concurrently and reports every recipient.
func ExampleProducer_Campaign() {
	redis, stop := exampleRedis()
	defer stop()
	p, err := producer.New(redis, producer.Config{DefaultFrom: "+919800000001"})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	file := strings.NewReader("to,media_link,ref\n" +
		"+919876543210,https://example.com/a.jpg,r1\n" +
		"919876543211,ftp://example.com/b.jpg,r2\n")
	opt := producer.Options{Defaults: job.Fields{Type: "image"}}
	s, err := p.Campaign(context.Background(), "spring-2026", producer.ReadCSV(file), opt, func(o producer.Outcome) {
		if o.Status == producer.StatusRejected {
			fmt.Printf("line %d: %s\n", o.Line, o.Reason)
		}
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("enqueued %d, duplicates %d, rejected %d\n", s.Enqueued, s.Duplicates, s.Rejected)
	// Output:
	// line 3: media_link "ftp://example.com/b.jpg" must be an absolute http(s) URL
	// enqueued 1, duplicates 0, rejected 1
}
