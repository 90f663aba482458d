package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

const (
	queue     = "whatsapp"
	mediaLink = "https://example.com/offer.jpg"
	maxRetry  = 8
	retention = 24 * time.Hour
)

// recipient i is a valid Indian mobile number in E.164; index(to) gives i back, so the
// sandbox's call log can be joined with the benchmark's own records.
func recipient(i int) string { return fmt.Sprintf("+9198%08d", i) }

func index(to string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(to, "+9198"))
	if err != nil {
		return -1
	}
	return n
}

// campaignCSV is a campaign file of rows from..from+n-1 (to, type, media_link, ref), the sender
// coming from the producer's default.
func campaignCSV(from, n int) []byte {
	var b bytes.Buffer
	b.Grow(n * 64)
	b.WriteString("to,type,media_link,ref\n")
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s,image,%s,r%d\n", recipient(i), mediaLink, i)
	}
	return b.Bytes()
}

// enqueueCampaign puts rows from..from+n-1 into the queue through the real producer.
func enqueueCampaign(ctx context.Context, r *redisServer, campaign string, from, n int) error {
	p, err := producer.New(r.connOpt(), producer.Config{Queue: queue, DefaultFrom: sender})
	if err != nil {
		return err
	}
	defer p.Close()
	s, err := p.Campaign(ctx, campaign, producer.ReadCSV(bytes.NewReader(campaignCSV(from, n))), producer.Options{}, nil)
	if err != nil {
		return err
	}
	if s.Enqueued != n {
		return fmt.Errorf("enqueue %s: %+v, want %d enqueued", campaign, s, n)
	}
	return nil
}

// payload is what the producer makes of row i, built without the phone-number validation
// (the numbers are E.164 already); checkPayload proves the bytes are the producer's.
func payload(campaign string, i int) job.Payload {
	return job.Payload{V: job.Version, Campaign: campaign, From: sender, To: recipient(i), Type: "image",
		MediaLink: mediaLink, Ref: "r" + strconv.Itoa(i), WASource: job.DefaultSource}
}

func checkPayload(campaign string, i int) error {
	want, err := job.New(campaign, job.Fields{To: recipient(i), Type: "image", MediaLink: mediaLink,
		Ref: "r" + strconv.Itoa(i), From: sender})
	if err != nil {
		return err
	}
	a, _ := job.Encode(want)
	b, _ := job.Encode(payload(campaign, i))
	if !bytes.Equal(a, b) || job.TaskID(want) != job.TaskID(payload(campaign, i)) {
		return fmt.Errorf("bench payload differs from the producer's:\n%s\n%s", a, b)
	}
	return nil
}

// kaleyraBody is the exact request body the worker's client sends for the job.
func kaleyraBody(p job.Payload) ([]byte, error) {
	return kaleyra.Body(kaleyra.Message{To: p.To, Type: p.Type, MediaID: p.MediaID, MediaLink: p.MediaLink,
		Caption: p.Caption, Filename: p.Filename, Ref: p.Ref, Ref1: p.Ref1, Ref2: p.Ref2, WASource: p.WASource})
}

// taskOptions are the options the producer gives every task.
func taskOptions(id string) []asynq.Option {
	return []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(maxRetry), asynq.Retention(retention), asynq.TaskID(id)}
}
