package inprocess

// The demo (`wabulk demo`): a sample campaign shipped inside the binary, sent through an
// in-process Redis and an in-process fake Kaleyra whose faults are fixed by a seed, so a newcomer
// sees the whole job — enqueue, rate limit, retries that recover, dead letters — with nothing
// installed but Go, in a few seconds.

import (
	"bytes"
	"context"
	_ "embed"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/producer"
	"github.com/wabulk/wabulk/worker"
)

// CampaignCSV is the sample campaign: 200 recipients in India, the UK, Indonesia, Brazil, the
// UAE and Singapore, with images, documents, videos, audio and stickers, each with refs.
//
//go:embed campaign.csv
var CampaignCSV []byte

// DemoCampaign is the sample campaign's id.
const DemoCampaign = "demo-spring-sale"

// DemoMediaID is the media id the sample campaign's rows with a media_id send.
const DemoMediaID = "1234567890123456"

// DemoSandbox is the fake Kaleyra of the demo: some latency, about one send in eight answered 500
// WA500 (retried until it goes through), and a few permanent answers — E110 (low balance) and
// WA400 (bad payload) — that become dead letters. The seed makes every run the same.
func DemoSandbox() sandbox.Config {
	return sandbox.Config{
		Seed:    2026,
		Latency: 30 * time.Millisecond,
		Jitter:  25 * time.Millisecond,
		Rates:   map[string]float64{sandbox.AnswerInternal: 0.12, sandbox.AnswerLowBalance: 0.03, sandbox.AnswerBadPayload: 0.025},
		Balance: -1,
		// The media id some rows of the sample campaign send, uploaded before the demo.
		MediaIDs: []string{DemoMediaID},
	}
}

// DemoWorker is the demo's worker: retries come back within 200ms–2s (instead of 5s–10m) so the
// demo ends in seconds, at 60 messages per second.
func DemoWorker() worker.Config {
	return worker.Config{
		Queue:           "demo",
		Concurrency:     20,
		Rate:            60,
		RetryBase:       200 * time.Millisecond,
		RetryMax:        2 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		Retention:       time.Hour,
	}
}

// DemoMaxRetry is the demo's retry budget per job.
const DemoMaxRetry = 8

// DemoOptions are what the caller of Demo decides.
type DemoOptions struct {
	// Out receives Send's step lines. Default io.Discard.
	Out io.Writer
	// Progress receives the campaign's counts while it drains (see SendConfig.Progress).
	Progress func(store.Counts)
	// Log receives the worker's per-attempt JSON lines. Default: none.
	Log *zap.Logger
	// Worker, when set, changes the demo's worker settings (tests make it faster).
	Worker func(*worker.Config)
}

// DemoRecipients is how many recipients the sample campaign has.
var DemoRecipients = bytes.Count(CampaignCSV, []byte("\n")) - 1

// Demo sends the sample campaign through an in-process Redis and fake Kaleyra.
func Demo(ctx context.Context, o DemoOptions) (SendResult, error) {
	w := DemoWorker()
	if o.Worker != nil {
		o.Worker(&w)
	}
	sb := DemoSandbox()
	return Send(ctx, SendConfig{
		Campaign:      DemoCampaign,
		Rows:          producer.ReadCSV(bytes.NewReader(CampaignCSV)),
		Producer:      producer.Config{MaxRetry: DemoMaxRetry},
		Worker:        w,
		EmbeddedRedis: true,
		Sandbox:       &sb,
		Callbacks:     true,
		Out:           o.Out,
		Progress:      o.Progress,
		Log:           o.Log,
	})
}

// DemoNextSteps are the commands that do what the demo did against a real Redis and Kaleyra.
const DemoNextSteps = `
The same against a real Redis and Kaleyra:

  export WABULK_REDIS_URL=redis://127.0.0.1:6379/0   # any Redis 6+; docker run -p 6379:6379 redis:7
  export KALEYRA_SID=<your SID> KALEYRA_API_KEY=<your key> KALEYRA_REGION=in
  export KALEYRA_FROM=+91XXXXXXXXXX                    # your WhatsApp business number
  wabulk worker &                                      # as many as you like, on any machines
  wabulk enqueue --campaign spring-sale campaign.csv   # one job per recipient
  wabulk status --campaign spring-sale --watch         # sent / retry / dead, by code
  wabulk dead list --campaign spring-sale              # what failed and why
  wabulk dead redrive --campaign spring-sale --code E110   # after a top-up

or in one process, until the campaign is done:

  wabulk send --campaign spring-sale campaign.csv

To rehearse on a real Redis without Kaleyra, run the fake one and point the worker at it:

  wabulk sandbox --fault WA500=0.1 --fault E110=0.02 &
  export KALEYRA_BASE_URL=http://127.0.0.1:8089 KALEYRA_SID=sandbox-sid KALEYRA_API_KEY=sandbox-key
`
