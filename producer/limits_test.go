package producer_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// A row within every field limit whose JSON encoding exceeds the worker's payload limit (JSON
// escapes & and > as six bytes each) must be rejected at enqueue: enqueued, the worker would
// refuse it as INVALID_PAYLOAD and the campaign would never finish.
func TestPayloadOverTheWorkerLimitIsRejectedAtEnqueue(t *testing.T) {
	b := setup(t, redistest.Options{})
	ctx := context.Background()
	big := job.Fields{To: number(1), Type: "image", MediaLink: "https://example.com/a.png?" + strings.Repeat("&", 2000),
		Caption: strings.Repeat("‹", 1024), Ref: strings.Repeat(">", 255), Ref1: strings.Repeat(">", 255), Ref2: strings.Repeat(">", 255)}
	line, err := json.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	small := `{"to":"` + number(2) + `","type":"image","media_id":"m"}`
	in := string(line) + "\n" + small + "\n"

	s, got, err := run(t, b.p, "big", producer.ReadJSONL(strings.NewReader(in)), producer.Options{})
	if err != nil || s != (producer.Summary{Enqueued: 1, Rejected: 1}) {
		t.Fatalf("summary %+v %v, want 1 enqueued and 1 rejected", s, err)
	}
	limit := strconv.Itoa(job.MaxPayload)
	if got[0].Status != producer.StatusRejected || !strings.Contains(got[0].Reason, limit) {
		t.Fatalf("oversized row: %+v, want rejected with a reason naming %s", got[0], limit)
	}
	if ids := queued(t, b.insp); len(ids) != 1 {
		t.Fatalf("%d tasks queued, want only the small row's", len(ids))
	}
	// The same through Send (the HTTP API's /v1/messages).
	out, err := b.p.Send(ctx, "big", big)
	if err != nil || len(out) != 1 || out[0].Status != producer.StatusRejected || !strings.Contains(out[0].Reason, limit) {
		t.Fatalf("Send: %+v %v, want rejected naming %s", out, err, limit)
	}
	if c, err := b.led.Counts(ctx, "big"); err != nil || c.Enqueued != 1 {
		t.Fatalf("ledger %+v %v, want 1 enqueued", c, err)
	}
}

// Send with many numbers in `to` writes them at most 64 per script call, as Campaign does: one
// call with 100,000 keys held Redis, and every other client, for half a second.
func TestSendBatchesManyNumbers(t *testing.T) {
	b := setup(t, redistest.Options{})
	ctx := context.Background()
	// Warm-up: loads the scripts and declares and registers the lane, so that what is counted
	// next is the enqueue calls alone.
	if _, err := b.p.Send(ctx, "many", job.Fields{To: number(0), Type: "image", MediaID: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Client(t).ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	tos := make([]string, n)
	for i := range tos {
		tos[i] = number(i + 1)
	}
	// One invalid number near the end: still reported, beside the valid ones.
	tos[n-2] = "12"
	out, err := b.p.Send(ctx, "many", job.Fields{To: strings.Join(tos, ","), Type: "image", MediaID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	enq := 0
	for _, o := range out {
		if o.Status == producer.StatusEnqueued {
			enq++
		}
	}
	if len(out) != n || enq != n-1 || out[n-2].Status != producer.StatusRejected {
		t.Fatalf("%d outcomes, %d enqueued, number %d %+v; want %d, %d, rejected", len(out), enq, n-2, out[n-2], n, n-1)
	}
	want := (n + 63) / 64
	if calls := b.srv.Info(t, "commandstats", "cmdstat_evalsha"); !strings.HasPrefix(calls, "calls="+strconv.Itoa(want)+",") {
		t.Fatalf("EVALSHA stats %q, want %d calls of at most 64 tasks", calls, want)
	}
	if ids := queued(t, b.insp); len(ids) != n {
		t.Fatalf("%d tasks queued, want %d (warm-up and %d new)", len(ids), n, n-1)
	}
}

// The sender is part of the TaskID, so it must be known at enqueue: left to the worker's
// KALEYRA_FROM, a row got "…:default:…" in one run and "…:<number>:…" in the next, and was
// sent twice. Without a DefaultFrom, a row that names no sender is refused.
func TestRowWithoutSenderIsRejectedWhenThereIsNoDefaultSender(t *testing.T) {
	srv := redistest.Start(t)
	p, err := producer.New(srv.ConnOpt(t), producer.Config{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	in := "to,type,media_id,from\n" + number(1) + ",image,m,\n" + number(2) + ",image,m," + sender + "\n"
	for _, dry := range []bool{true, false} {
		s, got, err := run(t, p, "gap", producer.ReadCSV(strings.NewReader(in)), producer.Options{DryRun: dry})
		want := producer.Summary{Enqueued: 1, Rejected: 1}
		if dry {
			want = producer.Summary{Valid: 1, Rejected: 1}
		}
		if err != nil || s != want {
			t.Fatalf("dry run %v: summary %+v %v, want %+v", dry, s, err, want)
		}
		if got[0].Status != producer.StatusRejected || got[0].Reason != "no sender: give from or set KALEYRA_FROM" || got[0].TaskID != "" {
			t.Fatalf("row without from: %+v, want rejected for no sender", got[0])
		}
		if got[1].TaskID != "gap:919800000001:919800000002" {
			t.Fatalf("row with from: %+v", got[1])
		}
	}
	out, err := p.Send(ctx, "gap", job.Fields{To: number(3), Type: "image", MediaID: "m"})
	if err != nil || len(out) != 1 || out[0].Status != producer.StatusRejected || !strings.Contains(out[0].Reason, "no sender") {
		t.Fatalf("Send without from: %+v %v, want rejected for no sender", out, err)
	}
	insp := asynq.NewInspector(srv.ConnOpt(t))
	t.Cleanup(func() { insp.Close() })
	for id := range queued(t, insp) {
		if strings.Contains(id, ":default:") {
			t.Fatalf("a job was enqueued for the worker's default sender: %s", id)
		}
	}
	// With a DefaultFrom, the same row gets the real sender in its TaskID.
	p2, err := producer.New(srv.ConnOpt(t), producer.Config{Queue: queue, DefaultFrom: "+919800000009"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	out, err = p2.Send(ctx, "gap", job.Fields{To: number(1), Type: "image", MediaID: "m"})
	if err != nil || len(out) != 1 || out[0].TaskID != "gap:919800000009:919800000001" {
		t.Fatalf("Send with DefaultFrom: %+v %v", out, err)
	}
}

// A campaign-wide media (--media-link) and a row's own media_id: the row's media replaces the
// default as a whole, in both directions, rather than the row being rejected for naming both.
func TestRowMediaReplacesTheDefaultMedia(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := "to,media_id,media_link\n" + number(1) + ",row-id,\n" + number(2) + ",,https://example.com/row.png\n" + number(3) + ",,\n"
	for _, tc := range []struct {
		name     string
		defaults job.Fields
		want     []string // media of rows 1, 2, 3 as id|link
	}{
		{"default link", job.Fields{Type: "image", MediaLink: "https://example.com/def.png"},
			[]string{"row-id|", "|https://example.com/row.png", "|https://example.com/def.png"}},
		{"default id", job.Fields{Type: "image", MediaID: "def-id"},
			[]string{"row-id|", "|https://example.com/row.png", "def-id|"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			campaign := strings.ReplaceAll(tc.name, " ", "-")
			s, _, err := run(t, b.p, campaign, producer.ReadCSV(strings.NewReader(in)), producer.Options{Defaults: tc.defaults})
			if err != nil || s != (producer.Summary{Enqueued: 3}) {
				t.Fatalf("summary %+v %v, want 3 enqueued", s, err)
			}
			var got []string
			for _, ti := range queued(t, b.insp) {
				pl, err := job.Decode(ti.Payload)
				if err != nil {
					t.Fatal(err)
				}
				if pl.Campaign == campaign {
					got = append(got, pl.To+" "+pl.MediaID+"|"+pl.MediaLink)
				}
			}
			slices.Sort(got)
			var want []string
			for i, m := range tc.want {
				want = append(want, number(i+1)+" "+m)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("media\n got %q\nwant %q", got, want)
			}
		})
	}
}
