package producer_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// BenchmarkEnqueueCSV enqueues a generated CSV of b.N rows through Campaign, and the same
// payload bytes and TaskIDs through a bare asynq Enqueue loop with the same concurrency, in the
// same run against the same redis-server, and reports both rates and their ratio. Run it as
//
//	go test -run XXX -bench EnqueueCSV -benchtime 100000x ./producer
func BenchmarkEnqueueCSV(b *testing.B) {
	const conc = 16
	srv := redistest.Start(b)
	rdb := srv.Client(b)
	ctx := context.Background()

	var csv bytes.Buffer
	csv.WriteString("to,type,media_link,ref\n")
	payloads := make([][]byte, b.N)
	ids := make([]string, b.N)
	for i := range b.N {
		f := job.Fields{To: fmt.Sprintf("+9198%08d", i), Type: "image", MediaLink: "https://example.com/offer.jpg", Ref: fmt.Sprint("r", i), From: sender}
		fmt.Fprintf(&csv, "%s,%s,%s,%s\n", f.To, f.Type, f.MediaLink, f.Ref)
		p, err := job.New("bench", f)
		if err != nil {
			b.Fatal(err)
		}
		payloads[i], _ = job.Encode(p)
		ids[i] = job.TaskID(p)
	}

	// The bare loop: what asynq alone costs for the same work, into the lane the producer
	// writes to.
	ln := lane("bench", sender)
	client := asynq.NewClientFromRedisClient(rdb)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
				_, err := client.Enqueue(asynq.NewTask(job.TaskType, payloads[i]), asynq.Queue(ln), asynq.TaskID(ids[i]),
					asynq.MaxRetry(8), asynq.Retention(24*time.Hour))
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	bare := time.Since(t0)
	b.StopTimer()
	payloads, ids = nil, nil
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		b.Fatal(err)
	}

	p, err := producer.NewFromClient(rdb, producer.Config{Queue: queue, DefaultFrom: sender, Concurrency: conc})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	t0 = time.Now()
	s, err := p.Campaign(ctx, "bench", producer.ReadCSV(bytes.NewReader(csv.Bytes())), producer.Options{}, nil)
	ours := time.Since(t0)
	b.StopTimer()
	if err != nil || s.Enqueued != b.N {
		b.Fatalf("summary %+v, %v", s, err)
	}
	bareRate, ourRate := float64(b.N)/bare.Seconds(), float64(b.N)/ours.Seconds()
	b.ReportMetric(bareRate, "bare-rows/s")
	b.ReportMetric(ourRate, "producer-rows/s")
	b.ReportMetric(ourRate/bareRate, "ratio")
}
