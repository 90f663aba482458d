// Command campaign is wabulk used as a library from another Go module: it enqueues a small
// campaign with package producer and sends it with a worker running in the same process, then
// prints the campaign's counts. It imports only wabulk's public packages (job, producer,
// worker).
//
//	go run ./campaign -redis 127.0.0.1:6379 -kaleyra-url http://127.0.0.1:8089 \
//	    -sid sandbox-sid -key sandbox-key -from +919000000001
//
// (`wabulk sandbox` serves a fake Kaleyra on 127.0.0.1:8089 with those credentials.)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	kaleyraURL := flag.String("kaleyra-url", "", "Kaleyra base URL (empty: the region's API)")
	sid := flag.String("sid", os.Getenv("KALEYRA_SID"), "Kaleyra account SID")
	key := flag.String("key", os.Getenv("KALEYRA_API_KEY"), "Kaleyra API key")
	from := flag.String("from", "", "WhatsApp business number to send from")
	queue := flag.String("queue", "example", "queue namespace")
	flag.Parse()
	if err := run(*redisAddr, *kaleyraURL, *sid, *key, *from, *queue); err != nil {
		fmt.Fprintln(os.Stderr, "campaign:", err)
		os.Exit(1)
	}
}

func run(redisAddr, kaleyraURL, sid, key, from, queue string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	redis := asynq.RedisClientOpt{Addr: redisAddr}

	p, err := producer.New(redis, producer.Config{Queue: queue, DefaultFrom: from})
	if err != nil {
		return err
	}
	defer p.Close()

	// One message to two recipients, from a CRM event...
	outs, err := p.Send(ctx, "welcome", job.Fields{To: "+919812345601,+919812345602", Type: "image",
		MediaLink: "https://cdn.example.com/welcome.jpg", Caption: "Welcome!", Ref: "crm-1"})
	if err != nil {
		return err
	}
	for _, o := range outs {
		fmt.Printf("%s %s %s\n", o.To, o.Status, o.Reason)
	}
	// ...and a campaign file, streamed row by row.
	csv := "to,ref\n+919812345603,r3\n+919812345604,r4\nnot-a-number,r5\n"
	sum, err := p.Campaign(ctx, "welcome", producer.ReadCSV(strings.NewReader(csv)),
		producer.Options{Defaults: job.Fields{Type: "image", MediaLink: "https://cdn.example.com/welcome.jpg"}},
		func(o producer.Outcome) {
			if o.Status == producer.StatusRejected {
				fmt.Printf("line %d rejected: %s\n", o.Line, o.Reason)
			}
		})
	if err != nil {
		return err
	}
	fmt.Printf("enqueued %d, duplicates %d, rejected %d\n", sum.Enqueued, sum.Duplicates, sum.Rejected)

	// A worker in this process sends them; any number of `wabulk worker` processes could too.
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(wctx, worker.Config{Redis: redis, Queue: queue, From: from, Rate: 20,
			Kaleyra: worker.KaleyraConfig{SID: sid, APIKey: key, BaseURL: kaleyraURL}}, nil)
	}()
	c, err := waitFinished(ctx, p, "welcome", done)
	stop()
	if err != nil {
		return err
	}
	if err := <-done; err != nil { // the worker stops cleanly: in-flight jobs finish
		return err
	}
	fmt.Printf("campaign welcome: sent %d, dead %d of %d\n", c.Completed, c.Dead, c.Enqueued)
	return nil
}

// waitFinished polls the campaign's counts until every job is sent or dead.
func waitFinished(ctx context.Context, p *producer.Producer, campaign string, worker <-chan error) (job.Counts, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := p.Counts(ctx, campaign)
		if err == nil && c.Enqueued > 0 && c.Completed+c.Dead == c.Enqueued {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("campaign not finished: %+v: %w", c, ctx.Err())
		case err := <-worker:
			return c, errors.Join(errors.New("the worker stopped early"), err)
		case <-tick.C:
		}
	}
}
