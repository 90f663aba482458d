package producer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

const (
	queue  = "whatsapp"
	sender = "+919800000001"
)

// bundle is what a producer test works with.
type bundle struct {
	srv  *redistest.Server
	p    *producer.Producer
	insp *asynq.Inspector
	led  *store.Ledger
}

func setup(t *testing.T, o redistest.Options) *bundle {
	t.Helper()
	srv := redistest.StartWith(t, o)
	p, err := producer.New(srv.ConnOpt(t), producer.Config{Queue: queue, DefaultFrom: sender, MaxRetry: 5, Retention: time.Hour, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	insp := asynq.NewInspector(srv.ConnOpt(t))
	t.Cleanup(func() { insp.Close() })
	return &bundle{srv: srv, p: p, insp: insp, led: store.New(srv.Client(t), queue, time.Hour)}
}

// number returns the i-th of a series of valid, distinct Indian mobile numbers.
func number(i int) string { return fmt.Sprintf("+9198%08d", i) }

// csvRows returns a CSV campaign with n valid rows.
func csvRows(n int) string {
	var b strings.Builder
	b.WriteString("to,type,media_link,ref\n")
	for i := range n {
		fmt.Fprintf(&b, "%s,image,https://example.com/a.jpg,r%d\n", number(i), i)
	}
	return b.String()
}

// run runs a campaign and collects its outcomes.
func run(t *testing.T, p *producer.Producer, campaign string, rows iter.Seq[producer.Row], opt producer.Options) (producer.Summary, []producer.Outcome, error) {
	t.Helper()
	var got []producer.Outcome
	s, err := p.Campaign(context.Background(), campaign, rows, opt, func(o producer.Outcome) { got = append(got, o) })
	slices.SortStableFunc(got, func(a, b producer.Outcome) int {
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.To, b.To)
	})
	return s, got, err
}

// lane is the asynq queue the producer puts campaign's jobs from sender in.
func lane(campaign, sender string) string { return store.New(nil, queue, 0).LaneName(campaign, sender) }

// queued returns the TaskIDs pending in the namespace: in every lane (each listed in
// asynq:queues before its first task is written).
func queued(t *testing.T, insp *asynq.Inspector) map[string]*asynq.TaskInfo {
	t.Helper()
	qs, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*asynq.TaskInfo{}
	for _, q := range qs {
		if !strings.HasPrefix(q, queue+":") {
			continue
		}
		for id, ti := range pendingIn(t, insp, q) {
			out[id] = ti
		}
	}
	return out
}

// pendingIn returns the TaskIDs in asynq queue q's pending list.
func pendingIn(t *testing.T, insp *asynq.Inspector, q string) map[string]*asynq.TaskInfo {
	t.Helper()
	out := map[string]*asynq.TaskInfo{}
	for page := 1; ; page++ {
		tasks, err := insp.ListPendingTasks(q, asynq.Page(page), asynq.PageSize(1000))
		if err != nil {
			if errors.Is(err, asynq.ErrQueueNotFound) {
				return out
			}
			t.Fatal(err)
		}
		for _, ti := range tasks {
			out[ti.ID] = ti
		}
		if len(tasks) < 1000 {
			return out
		}
	}
}

func TestCampaignPutsJobsInTheQueueWithPayloadAndTaskID(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := "to,type,media_id,caption,ref,from\n" +
		"91 98765-43210,image,m1,Hello,order-1,\n" +
		"\"+91 98123-45678, +919812345679\",document,m2,,,+919800000002\n"
	s, got, err := run(t, b.p, "c1", producer.ReadCSV(strings.NewReader(in)), producer.Options{Defaults: job.Fields{WASource: "shopify"}})
	if err != nil {
		t.Fatal(err)
	}
	if s != (producer.Summary{Enqueued: 3}) {
		t.Fatalf("summary %+v, want 3 enqueued", s)
	}
	want := []producer.Outcome{
		{Index: 0, Line: 2, To: "+919876543210", TaskID: "c1:919800000001:919876543210", Status: producer.StatusEnqueued},
		{Index: 1, Line: 3, To: "+919812345678", TaskID: "c1:919800000002:919812345678", Status: producer.StatusEnqueued},
		{Index: 1, Line: 3, To: "+919812345679", TaskID: "c1:919800000002:919812345679", Status: producer.StatusEnqueued},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("outcomes\n got %+v\nwant %+v", got, want)
	}
	ln := lane("c1", sender)
	ti, err := b.insp.GetTaskInfo(ln, "c1:919800000001:919876543210")
	if err != nil {
		t.Fatal(err)
	}
	p, err := job.Decode(ti.Payload)
	if err != nil {
		t.Fatal(err)
	}
	wantP := job.Payload{V: job.Version, Campaign: "c1", From: sender, To: "+919876543210", Type: "image",
		MediaID: "m1", Caption: "Hello", Ref: "order-1", WASource: "shopify"}
	if p != wantP {
		t.Fatalf("payload\n got %+v\nwant %+v", p, wantP)
	}
	if ti.Type != job.TaskType || ti.MaxRetry != 5 || ti.Retention != time.Hour || ti.Queue != ln {
		t.Fatalf("task type %q max retry %d retention %v queue %q", ti.Type, ti.MaxRetry, ti.Retention, ti.Queue)
	}
	if n := len(queued(t, b.insp)); n != 3 {
		t.Fatalf("%d tasks pending, want 3", n)
	}
	// One lane per sender, each registered live for the workers.
	for ln, want := range map[string]int{lane("c1", sender): 1, lane("c1", "+919800000002"): 2} {
		if n := len(pendingIn(t, b.insp, ln)); n != want {
			t.Fatalf("%d tasks pending in lane %s, want %d", n, ln, want)
		}
	}
	live, err := b.led.LiveLanes(context.Background())
	wantLive := []store.Lane{
		{Name: lane("c1", sender), Campaign: "c1", Sender: "919800000001", Priority: store.PriorityNormal},
		{Name: lane("c1", "+919800000002"), Campaign: "c1", Sender: "919800000002", Priority: store.PriorityNormal},
	}
	if err != nil || !slices.Equal(live, wantLive) {
		t.Fatalf("live lanes %+v %v, want %+v", live, err, wantLive)
	}
}

func TestCampaignRerunEnqueuesNothingNew(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := csvRows(50)
	if s, _, err := run(t, b.p, "again", producer.ReadCSV(strings.NewReader(in)), producer.Options{}); err != nil || s.Enqueued != 50 {
		t.Fatalf("first run: %+v %v", s, err)
	}
	s, got, err := run(t, b.p, "again", producer.ReadCSV(strings.NewReader(in)), producer.Options{})
	if err != nil || s != (producer.Summary{Duplicates: 50}) {
		t.Fatalf("second run: %+v %v, want 50 duplicates", s, err)
	}
	for _, o := range got {
		if o.Status != producer.StatusDuplicate {
			t.Fatalf("outcome %+v, want duplicate", o)
		}
	}
	if n := len(queued(t, b.insp)); n != 50 {
		t.Fatalf("%d tasks pending, want 50", n)
	}
	c, err := b.led.Counts(context.Background(), "again")
	if err != nil || c.Enqueued != 50 {
		t.Fatalf("ledger counts %+v %v, want enqueued 50", c, err)
	}
}

func TestCampaignRecipientRepeatedInTheFileIsADuplicate(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := "to,type,media_id\n" + number(1) + ",image,m\n\"" + number(2) + "," + number(2) + "\",image,m\n" + number(1) + ",video,m\n"
	for _, dry := range []bool{false, true} {
		t.Run(fmt.Sprintf("dry run %v", dry), func(t *testing.T) {
			s, _, err := run(t, b.p, fmt.Sprintf("rep-%v", dry), producer.ReadCSV(strings.NewReader(in)), producer.Options{DryRun: dry})
			want := producer.Summary{Enqueued: 2, Duplicates: 2}
			if dry {
				want = producer.Summary{Valid: 2, Duplicates: 2}
			}
			if err != nil || s != want {
				t.Fatalf("summary %+v %v, want %+v", s, err, want)
			}
		})
	}
}

func TestCampaignReportsInvalidRowsByLineAndGoesOn(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := "to,type,media_link\n" +
		number(1) + ",image,https://x.test/a.png\n" +
		"\n" + // blank lines are no rows but count as lines
		"98x76,image,https://x.test/a.png\n" +
		number(2) + ",image,ftp://x.test/a.png\n" +
		"\"multi\nline\",image\n" + // ragged, starting on line 6
		number(3) + ",image,https://x.test/a.png\n"
	s, got, err := run(t, b.p, "bad", producer.ReadCSV(strings.NewReader(in)), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s != (producer.Summary{Enqueued: 2, Rejected: 3}) {
		t.Fatalf("summary %+v", s)
	}
	var lines []string
	for _, o := range got {
		if o.Status == producer.StatusRejected {
			lines = append(lines, fmt.Sprintf("line %d: %s", o.Line, o.Reason))
		}
	}
	want := []string{
		`line 4: to: "98x76" is not a phone number (unexpected 'x')`,
		`line 5: media_link "ftp://x.test/a.png" must be an absolute http(s) URL`,
		`line 6: row has 2 fields, the header has 3`,
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("rejections\n got %q\nwant %q", lines, want)
	}
	if got[1].Fields.To != "98x76" || got[1].Fields.Type != "image" {
		t.Fatalf("a rejected outcome carries the row's fields for a rejects file, got %+v", got[1].Fields)
	}
}

func TestCampaignCountsEnqueuedJobsInTheLedger(t *testing.T) {
	b := setup(t, redistest.Options{})
	// Many enqueue batches, each counting its new tasks in the same script call that writes
	// them, and a rejected row that counts nothing.
	in := csvRows(1234) + "12,image,https://x.test/a,r\n"
	s, _, err := run(t, b.p, "led", producer.ReadCSV(strings.NewReader(in)), producer.Options{})
	if err != nil || s.Enqueued != 1234 || s.Rejected != 1 {
		t.Fatalf("summary %+v %v", s, err)
	}
	c, err := b.led.Counts(context.Background(), "led")
	if err != nil || c.Enqueued != 1234 {
		t.Fatalf("ledger %+v %v, want enqueued 1234", c, err)
	}
	camps, err := b.led.Campaigns(context.Background())
	if err != nil || !slices.Contains(camps, "led") {
		t.Fatalf("campaigns %v %v", camps, err)
	}
}

func TestStrictEnqueuesNothingWhenOneRowIsInvalid(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := csvRows(20) + number(99) + ",gif,https://x.test/a,r\n"
	s, got, err := run(t, b.p, "strict", producer.ReadCSV(strings.NewReader(in)), producer.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if s != (producer.Summary{Rejected: 1, NotAttempted: 20}) {
		t.Fatalf("summary %+v", s)
	}
	if len(got) != 1 || got[0].Line != 22 || !strings.Contains(got[0].Reason, `type "gif"`) {
		t.Fatalf("outcomes %+v", got)
	}
	if n := len(queued(t, b.insp)); n != 0 {
		t.Fatalf("%d tasks queued, want none", n)
	}
}

func TestStrictEnqueuesEverythingWhenAllRowsAreValid(t *testing.T) {
	b := setup(t, redistest.Options{})
	s, got, err := run(t, b.p, "strict-ok", producer.ReadCSV(strings.NewReader(csvRows(30))), producer.Options{Strict: true})
	if err != nil || s != (producer.Summary{Enqueued: 30}) || len(got) != 30 {
		t.Fatalf("summary %+v (%d outcomes) %v", s, len(got), err)
	}
	if n := len(queued(t, b.insp)); n != 30 {
		t.Fatalf("%d tasks queued, want 30", n)
	}
}

// onlyReader hides every method but Read.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

func TestStrictNeedsARereadableInput(t *testing.T) {
	b := setup(t, redistest.Options{})
	// A reader that is not a Seeker can only be read once.
	s, _, err := run(t, b.p, "once", producer.ReadCSV(onlyReader{strings.NewReader(csvRows(3))}), producer.Options{Strict: true})
	if err == nil || !strings.Contains(err.Error(), "cannot be read twice") {
		t.Fatalf("err %v, want one about reading twice", err)
	}
	if s.Enqueued != 0 || s.NotAttempted != 3 {
		t.Fatalf("summary %+v", s)
	}
}

func TestDryRunEnqueuesNothing(t *testing.T) {
	b := setup(t, redistest.Options{})
	in := csvRows(10) + "1,image,https://x.test/a,r\n"
	s, got, err := run(t, b.p, "dry", producer.ReadCSV(strings.NewReader(in)), producer.Options{DryRun: true})
	if err != nil || s != (producer.Summary{Valid: 10, Rejected: 1}) {
		t.Fatalf("summary %+v %v", s, err)
	}
	if got[0].Status != producer.StatusValid || got[0].TaskID == "" {
		t.Fatalf("first outcome %+v", got[0])
	}
	if n := len(queued(t, b.insp)); n != 0 {
		t.Fatalf("%d tasks queued, want none", n)
	}
}

func TestRedisUnreachableAtStartIsAnErrorWithNothingReported(t *testing.T) {
	b := setup(t, redistest.Options{})
	b.srv.Stop()
	var reported int
	s, err := b.p.Campaign(context.Background(), "down", producer.ReadCSV(strings.NewReader(csvRows(5))), producer.Options{},
		func(producer.Outcome) { reported++ })
	if !errors.Is(err, producer.ErrRedisUnreachable) {
		t.Fatalf("err %v, want redis unreachable", err)
	}
	if s != (producer.Summary{}) || reported != 0 {
		t.Fatalf("summary %+v, %d outcomes reported; want nothing", s, reported)
	}
	if _, err := b.p.Send(context.Background(), "down", job.Fields{To: number(1), Type: "image", MediaID: "m"}); err == nil {
		t.Fatal("Send with Redis down: no error")
	}
}

func TestRedisGoingAwayMidFileStopsWithAnExactSummary(t *testing.T) {
	// AOF with fsync on every write, so what Redis acknowledged can be read back after the crash.
	b := setup(t, redistest.Options{AOF: true})
	// Enough rows that some are left when Redis dies, with up to 4 batches of 64 in flight.
	const rows, killAfter = 2000, 150
	var sb strings.Builder
	sb.WriteString("to,type,media_link\n")
	bad := 0
	for i := range rows {
		if i%7 == 3 {
			bad++
			fmt.Fprintf(&sb, "98x%d,image,https://x.test/a\n", i)
			continue
		}
		fmt.Fprintf(&sb, "%s,image,https://x.test/a\n", number(i))
	}
	in := sb.String()
	var enqueued []string
	var n int
	s, err := b.p.Campaign(context.Background(), "crash", producer.ReadCSV(strings.NewReader(in)), producer.Options{},
		func(o producer.Outcome) {
			if o.Status == producer.StatusEnqueued {
				enqueued = append(enqueued, o.TaskID)
			}
			if n++; n == killAfter {
				b.srv.Stop()
			}
		})
	if err == nil {
		t.Fatal("no error after Redis went away")
	}
	t.Logf("error: %v; summary %+v", err, s)
	if sum := s.Enqueued + s.Duplicates + s.Rejected + s.NotAttempted; sum != rows {
		t.Fatalf("summary %+v adds up to %d, want %d", s, sum, rows)
	}
	if s.NotAttempted == 0 || s.Enqueued != len(enqueued) || n != s.Enqueued+s.Duplicates+s.Rejected {
		t.Fatalf("summary %+v, %d outcomes reported, %d enqueued", s, n, len(enqueued))
	}
	b.srv.Restart(t)
	inRedis := queued(t, b.insp)
	for _, id := range enqueued {
		if inRedis[id] == nil {
			t.Fatalf("%s reported enqueued but not in Redis", id)
		}
	}
	// An enqueue Redis applied but whose answer died with the connection is counted not
	// attempted (a re-run reports it as a duplicate); at most one batch per worker can be in
	// that state.
	if extra := len(inRedis) - len(enqueued); extra < 0 || extra > 4*producer.EnqueueBatch {
		t.Fatalf("%d jobs in Redis, %d reported enqueued", len(inRedis), len(enqueued))
	} else if extra > 0 {
		t.Logf("%d enqueues were applied but their answers lost", extra)
	}
	// The ledger counts exactly what Redis holds, the enqueues whose answers were lost included:
	// each batch's tasks and their count are written by one script.
	if c, err := b.led.Counts(context.Background(), "crash"); err != nil || c.Enqueued != int64(len(inRedis)) {
		t.Fatalf("ledger %+v %v, want %d enqueued (what Redis holds)", c, err, len(inRedis))
	}
	// A fresh producer: the old one's pool waits out its dial failures before it reconnects.
	p2, err := producer.New(b.srv.ConnOpt(t), producer.Config{Queue: queue, DefaultFrom: sender, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	s2, _, err := run(t, p2, "crash", producer.ReadCSV(strings.NewReader(in)), producer.Options{})
	if err != nil || s2.Rejected != bad || s2.Enqueued+s2.Duplicates != rows-bad || s2.Duplicates != len(inRedis) {
		t.Fatalf("re-run after the crash: %+v %v (in Redis before: %d)", s2, err, len(inRedis))
	}
}

func TestCancelStopsPromptlyAndReportsWhatWasEnqueued(t *testing.T) {
	b := setup(t, redistest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var enq int
	s, err := b.p.Campaign(ctx, "cancel", producer.ReadCSV(strings.NewReader(csvRows(5000))), producer.Options{},
		func(o producer.Outcome) {
			if enq++; enq == 100 {
				cancel()
			}
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if s.Enqueued != enq || s.Enqueued >= 5000 {
		t.Fatalf("summary %+v, %d reported", s, enq)
	}
	if n := len(queued(t, b.insp)); n != s.Enqueued {
		t.Fatalf("%d in Redis, summary says %d enqueued", n, s.Enqueued)
	}
	c, _ := b.led.Counts(context.Background(), "cancel")
	if c.Enqueued != int64(s.Enqueued) {
		t.Fatalf("ledger enqueued %d, summary %d", c.Enqueued, s.Enqueued)
	}
}

func TestReadErrorStopsTheCampaign(t *testing.T) {
	b := setup(t, redistest.Options{})
	_, err := b.p.Campaign(context.Background(), "hdr", producer.ReadCSV(strings.NewReader("phone,type\n1,image\n")), producer.Options{}, nil)
	var re *producer.ReadError
	if !errors.As(err, &re) || re.Line != 1 {
		t.Fatalf("err %v, want a *ReadError on line 1", err)
	}
}

func TestCampaignRefusesAnInvalidCampaignID(t *testing.T) {
	b := setup(t, redistest.Options{})
	if _, err := b.p.Campaign(context.Background(), "a b", producer.ReadCSV(strings.NewReader(csvRows(1))), producer.Options{}, nil); err == nil {
		t.Fatal("no error for campaign id with a space")
	}
}

func TestSend(t *testing.T) {
	b := setup(t, redistest.Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		f    job.Fields
		want []producer.Status
	}{
		{"one number is one job", job.Fields{To: number(1), Type: "image", MediaID: "m"}, []producer.Status{"enqueued"}},
		{"the same number again is a duplicate", job.Fields{To: number(1), Type: "image", MediaID: "m"}, []producer.Status{"duplicate"}},
		{"several numbers are several jobs", job.Fields{To: number(2) + ", " + number(3), Type: "image", MediaID: "m"}, []producer.Status{"enqueued", "enqueued"}},
		{"an invalid number is rejected beside a valid one", job.Fields{To: "12;" + number(4), Type: "image", MediaID: "m"}, []producer.Status{"rejected", "enqueued"}},
		{"no number is rejected", job.Fields{Type: "image", MediaID: "m"}, []producer.Status{"rejected"}},
		{"a sticker with a caption is rejected", job.Fields{To: number(5), Type: "sticker", MediaID: "m", Caption: "hi"}, []producer.Status{"rejected"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := b.p.Send(ctx, "one", tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []producer.Status
			for _, o := range out {
				got = append(got, o.Status)
				if o.Status == producer.StatusRejected && o.Reason == "" {
					t.Errorf("rejected without a reason: %+v", o)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("statuses %v, want %v (%+v)", got, tc.want, out)
			}
		})
	}
	c, err := b.led.Counts(ctx, "one")
	if err != nil || c.Enqueued != 4 {
		t.Fatalf("ledger %+v %v, want 4 enqueued", c, err)
	}
}

func TestNewRefusesAnInvalidDefaultSender(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := producer.New(srv.ConnOpt(t), producer.Config{DefaultFrom: "12"}); err == nil || !strings.Contains(err.Error(), "KALEYRA_FROM") {
		t.Fatalf("err %v, want one naming KALEYRA_FROM", err)
	}
}
