package store

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fillCampaign writes n accepted messages of campaign c straight into a lane's records, as
// asynq, the worker and the callbacks would leave them (a completed task with Kaleyra's answer
// as its result): every 4th delivered, every 4th read, every 8th failed 131047, the rest
// accepted only.
func fillCampaign(t testing.TB, l *Ledger, c string, n int) string {
	t.Helper()
	ctx := context.Background()
	lane := l.LaneName(c, "+919000000001")
	if err := l.DeclareLane(ctx, Lane{Name: lane, Campaign: c, Sender: "919000000001", Priority: PriorityNormal}, false); err != nil {
		t.Fatal(err)
	}
	pipe := l.rdb.Pipeline()
	for i := range n {
		tid := fmt.Sprintf("%s:919000000001:9198%08d", c, i)
		pipe.HSet(ctx, TaskKey(lane, tid), "state", "completed",
			"result", fmt.Sprintf(`{"messaging_product":"whatsapp","messages":[{"id":"wamid.%032x"}]}`, i))
		pipe.ZAdd(ctx, CompletedKey(lane), redis.Z{Score: 1715000000, Member: tid})
		switch i % 8 {
		case 0, 1:
			pipe.HSet(ctx, key(lane, "dlv"), tid, "delivered||1715000000")
		case 2, 3:
			pipe.HSet(ctx, key(lane, "dlv"), tid, "read||1715000001")
		case 4:
			pipe.HSet(ctx, key(lane, "dlv"), tid, "failed|131047|1715000002")
		}
		if pipe.Len() >= 5000 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return lane
}

func TestReportListsEveryRecipientWithItsState(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lane := fillCampaign(t, l, "r", 16)
	if err := l.Dead(ctx, lane, dead("r:919000000001:919899999999", "WA400", time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := l.CountSuppressed(ctx, "r", []string{"+919811111111", "+919811111111"}); err != nil {
		t.Fatal(err)
	}
	// Completed without a result: taken after the campaign was cancelled, never sent.
	unsent := "r:919000000001:919877777777"
	l.rdb.HSet(ctx, TaskKey(lane, unsent), "state", "completed")
	l.rdb.ZAdd(ctx, CompletedKey(lane), redis.Z{Score: 1715000000, Member: unsent})
	var buf bytes.Buffer
	n, err := l.WriteReport(ctx, "r", &buf)
	if err != nil || n != 19 {
		t.Fatalf("WriteReport = %d, %v", n, err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != "to,state,code,message_id,ref,ref1,ref2,updated_at" {
		t.Fatalf("header %v", rows[0])
	}
	states := map[string]int{}
	for _, r := range rows[1:] {
		states[r[1]]++
		if r[1] == "failed" && (r[2] != "131047" || !strings.HasPrefix(r[3], "wamid.") || r[7] != "2024-05-06T12:53:22Z") {
			t.Errorf("failed row %v", r)
		}
	}
	if fmt.Sprint(states) != "map[accepted:6 cancelled:1 dead:1 delivered:4 failed:2 read:4 suppressed:1]" {
		t.Errorf("states %v", states)
	}
	if c := l.mustCountsOf(t, "r"); c.Suppressed != 1 {
		t.Errorf("suppressed count %d", c.Suppressed)
	}
}

func (l *Ledger) mustCountsOf(t *testing.T, c string) Counts {
	t.Helper()
	n, err := l.Counts(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSafeCellKeepsFormulasOut(t *testing.T) {
	for in, want := range map[string]string{"=cmd()": "'=cmd()", "+1": "'+1", "-1": "'-1", "@x": "'@x", "\tx": "'\tx", "ok": "ok", "": ""} {
		if got := safeCell(in); got != want {
			t.Errorf("safeCell(%q) = %q", in, got)
		}
	}
}

type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// TestReportOf100000RecipientsRunsInFlatMemory writes the report of a 100,000-recipient campaign
// and measures the Go heap's peak while it runs, and the process's RSS.
func TestReportOf100000RecipientsRunsInFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	l := newLedger(t)
	const n = 100_000
	fillCampaign(t, l, "big", n)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	rssBefore := rssKB()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	w := &countingWriter{}
	rows, err := l.WriteReport(context.Background(), "big", w)
	took := time.Since(start)
	close(stop)
	<-sampled
	if err != nil || rows != n {
		t.Fatalf("WriteReport = %d, %v", rows, err)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("report of %d recipients: %d bytes of CSV in %v; Go heap in use peaked %.1f MB above the start; RSS %d -> %d KB",
		n, w.n.Load(), took, float64(grew)/1e6, rssBefore, rssKB())
	if grew > 32<<20 {
		t.Errorf("heap grew %d bytes while reporting: not flat", grew)
	}
}

// rssKB is the process's resident set (VmRSS), 0 where /proc is not there.
func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}
