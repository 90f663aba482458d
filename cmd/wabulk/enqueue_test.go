package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/proctest"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
)

type cliResult struct {
	stdout, stderr string
	code           int
}

// lastLine is the summary line the contract puts last on stdout.
func (r cliResult) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// enqueueCLI runs `wabulk enqueue args…` against redisURL with stdin, in a clean environment.
func enqueueCLI(t *testing.T, redisURL, stdin string, args ...string) cliResult {
	t.Helper()
	return runCLIWithInput(t, []string{"WABULK_REDIS_URL=" + redisURL, "KALEYRA_FROM=+919800000001"}, []byte(stdin),
		append([]string{"enqueue"}, args...)...)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	goodCSV = "to,type,media_link,ref\n" +
		"+919876543210,image,https://x.test/a.jpg,a\n" +
		"\"919876543211, 91 98765-43212\",image,https://x.test/a.jpg,b\n"
	mixedCSV = "to,type,media_link\n" +
		"+919876543210,image,https://x.test/a.jpg\n" +
		"+919876543211,gif,https://x.test/a.jpg\n" +
		"12,image,https://x.test/a.jpg\n"
)

func TestEnqueueCLIExitStatusAndOutput(t *testing.T) {
	srv := redistest.Start(t)
	down := "redis://127.0.0.1:1/0"
	for _, tc := range []struct {
		name, url, file, content string
		args                     []string
		code                     int
		summary                  string   // last stdout line; empty: none expected
		stderr                   []string // substrings of stderr
	}{
		{name: "all rows valid exits 0", url: srv.URL, file: "ok.csv", content: goodCSV, code: 0,
			summary: "enqueued 3, duplicates 0, rejected 0", stderr: []string{"campaign ok\n"}},
		{name: "the same file again is all duplicates", url: srv.URL, file: "ok.csv", content: goodCSV, code: 0,
			summary: "enqueued 0, duplicates 3, rejected 0"},
		{name: "rejected rows exit 1 and are reported by line", url: srv.URL, file: "mixed.csv", content: mixedCSV, code: 1,
			summary: "enqueued 1, duplicates 0, rejected 2",
			stderr:  []string{"line 3: type \"gif\" is not one of", "line 4: to: \"+12\""}},
		{name: "campaign-wide flags fill empty columns", url: srv.URL, file: "flags.csv", content: "to\n+919876543219\n",
			args: []string{"--type", "image", "--media-id", "m1"}, code: 0, summary: "enqueued 1, duplicates 0, rejected 0"},
		{name: "redis down exits 2 naming redis", url: down, file: "down.csv", content: goodCSV, code: 2,
			stderr: []string{"redis at redis://127.0.0.1:1/0: redis unreachable"}},
		{name: "a missing file exits 2", url: srv.URL, args: []string{"/nonexistent/x.csv"}, code: 2,
			stderr: []string{"campaign file: open /nonexistent/x.csv"}},
		{name: "an empty file exits 2", url: srv.URL, file: "empty.csv", content: "", code: 2, stderr: []string{"the file is empty"}},
		{name: "no to column exits 2", url: srv.URL, file: "noto.csv", content: "phone,type\n+919876543210,image\n", code: 2,
			stderr: []string{"unknown column(s) \"phone\""}},
		{name: "a header alone exits 0 with nothing done", url: srv.URL, file: "hdr.csv", content: "to,type\n", code: 0,
			summary: "enqueued 0, duplicates 0, rejected 0", stderr: []string{"no rows"}},
		{name: "a bad flag exits 2", url: srv.URL, file: "f.csv", content: goodCSV, args: []string{"--no-such-flag"}, code: 2},
		{name: "a bad format exits 2", url: srv.URL, file: "f.csv", content: goodCSV, args: []string{"--format", "xml"}, code: 2,
			stderr: []string{"want csv or jsonl"}},
		{name: "a file name that is no campaign id asks for --campaign", url: srv.URL, file: "my list.csv", content: goodCSV, code: 2,
			stderr: []string{"--campaign"}},
		{name: "jsonl by extension", url: srv.URL, file: "j.jsonl",
			content: `{"to":"+919876543250","type":"image","media_id":"m"}` + "\n\n" + `["not an object"]` + "\n", code: 1,
			summary: "enqueued 1, duplicates 0, rejected 1", stderr: []string{"line 3: line is not a JSON object"}},
		{name: "dry run enqueues nothing", url: srv.URL, file: "dry.csv", content: "to,type,media_id\n+919876543260,image,m\n",
			args: []string{"--dry-run"}, code: 0, summary: "enqueued 0, duplicates 0, rejected 0", stderr: []string{"dry run: 1 valid"}},
		{name: "strict enqueues nothing on one bad row", url: srv.URL, file: "strict.csv", content: mixedCSV,
			args: []string{"--strict", "--campaign", "strict"}, code: 1, summary: "enqueued 0, duplicates 0, rejected 2",
			stderr: []string{"strict: nothing enqueued"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.file != "" {
				args = append(tc.args, writeFile(t, tc.file, tc.content))
			} else {
				args = tc.args
			}
			r := enqueueCLI(t, tc.url, "", args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.summary != "" && r.lastLine() != tc.summary {
				t.Errorf("last stdout line %q, want %q", r.lastLine(), tc.summary)
			}
			if tc.summary == "" && r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if tc.code != 0 && !strings.Contains(r.stderr, "wabulk: ") {
				t.Errorf("exit %d without a message:\n%s", tc.code, r.stderr)
			}
		})
	}
	led := store.New(srv.Client(t), "whatsapp", 0)
	c, err := led.Counts(context.Background(), "ok")
	if err != nil || c.Enqueued != 3 {
		t.Fatalf("ledger counts of campaign ok: %+v %v, want 3 enqueued", c, err)
	}
}

func TestEnqueueCLIJSONSummary(t *testing.T) {
	srv := redistest.Start(t)
	r := enqueueCLI(t, srv.URL, "", "--json", "--campaign", "js", writeFile(t, "x.csv", mixedCSV))
	if r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.lastLine()), &got); err != nil {
		t.Fatalf("last line %q is not JSON: %v", r.lastLine(), err)
	}
	want := map[string]any{"campaign": "js", "enqueued": 1.0, "duplicates": 0.0, "rejected": 2.0, "not_attempted": 0.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestEnqueueCLIReadsStdin(t *testing.T) {
	srv := redistest.Start(t)
	t.Run("without --campaign it asks for one", func(t *testing.T) {
		r := enqueueCLI(t, srv.URL, goodCSV, "-")
		if r.code != 2 || !strings.Contains(r.stderr, "--campaign") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("csv", func(t *testing.T) {
		r := enqueueCLI(t, srv.URL, goodCSV, "--campaign", "in", "-")
		if r.code != 0 || r.lastLine() != "enqueued 3, duplicates 0, rejected 0" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("jsonl with --format", func(t *testing.T) {
		r := enqueueCLI(t, srv.URL, `{"TO":"+919876543270","type":"video","media_link":"https://x.test/v.mp4"}`+"\n",
			"--campaign", "in", "--format", "jsonl", "-")
		if r.code != 0 || r.lastLine() != "enqueued 1, duplicates 0, rejected 0" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("strict spools stdin and reads it twice", func(t *testing.T) {
		r := enqueueCLI(t, srv.URL, goodCSV, "--campaign", "in-strict", "--strict", "-")
		if r.code != 0 || r.lastLine() != "enqueued 3, duplicates 0, rejected 0" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

// enqueueRejects enqueues the campaign file in with --rejects, which must exit 1 (rows
// rejected), and returns the rejects file's records.
func enqueueRejects(t *testing.T, in string) [][]string {
	t.Helper()
	srv := redistest.Start(t)
	rej := filepath.Join(t.TempDir(), "rejects.csv")
	r := enqueueCLI(t, srv.URL, "", "--rejects", rej, writeFile(t, "rj.csv", in))
	if r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	f, err := os.Open(rej)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestEnqueueCLIWritesRejectsFile(t *testing.T) {
	recs := enqueueRejects(t, "to,type,media_link,caption\n"+
		"+919876543210,image,https://x.test/a.jpg,hi\n"+
		"\"+919876543211,98x\",audio,https://x.test/a.mp3,\n"+
		"+919876543212,audio,https://x.test/a.mp3,\"a, caption\"\n")
	header := []string{"line", "reason", "to", "type", "media_id", "media_link", "caption", "filename", "ref", "ref1", "ref2", "wa_source", "from"}
	if len(recs) != 3 || !slices.Equal(recs[0], header) {
		t.Fatalf("rejects file:\n%q", recs)
	}
	// Rows are written as their outcomes arrive (enqueues run concurrently): order by line.
	slices.SortFunc(recs[1:], func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	// Only the bad number of the row is written back, so resubmitting it sends nothing twice.
	if recs[1][0] != "3" || recs[1][2] != "98x" || recs[1][3] != "audio" || !strings.Contains(recs[1][1], "not a phone number") {
		t.Errorf("first reject %q", recs[1])
	}
	if recs[2][0] != "4" || recs[2][6] != "a, caption" || !strings.Contains(recs[2][1], "caption is not allowed for audio") {
		t.Errorf("second reject %q", recs[2])
	}
}

// TestKill9MidEnqueueCountsExactly kills `wabulk enqueue` with SIGKILL in the middle of a large
// file. Whatever batches were in flight, the campaign's ledger must count exactly the tasks its
// lane holds: the enqueue script writes a batch's tasks and counts them in one atomic call.
// (Before lanes, counts were written apart from the enqueue, in batches of 500, and a kill left
// them short of what the queue held.)
func TestKill9MidEnqueueCountsExactly(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	// Far more rows than get enqueued before the kill, with or without -race (the race build
	// enqueues a few thousand a second, the plain one a few tens of thousands).
	const rows = 200_000
	var b strings.Builder
	b.WriteString("to,type,media_link,ref\n")
	for i := range rows {
		fmt.Fprintf(&b, "+9198%08d,image,https://x.test/a.jpg,r%d\n", i, i)
	}
	file := writeFile(t, "big.csv", b.String())

	led := store.New(srv.Client(t), "whatsapp", 0)
	lane := led.LaneName("kill", "+919800000001") // KALEYRA_FROM of enqueueCLI's environment
	insp := asynq.NewInspector(srv.ConnOpt(t))
	t.Cleanup(func() { insp.Close() })
	// The producer declares the lane in its campaign, then lists it for asynq and writes its
	// first tasks: until asynq lists it, it holds none.
	pending := func() int {
		qi, err := insp.GetQueueInfo(lane)
		if err != nil {
			return 0
		}
		return qi.Pending
	}

	p := proctest.Start(t, []string{"WABULK_REDIS_URL=" + srv.URL, "KALEYRA_FROM=+919800000001"},
		"enqueue", "--campaign", "kill", file)
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	// Kill once the producer is well into the file: its lane is in the campaign (Counts finds
	// the campaign's lanes there; the producer declares a lane before its first tasks) and a
	// few thousand tasks are in, so its 16 enqueue workers are all busy.
	for {
		lanes, err := led.CampaignLanes(ctx, "kill")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(lanes, lane) {
			if n := pending(); n >= 3000 || n > 0 && time.Since(start) > 5*time.Second {
				break
			}
		}
		if p.Exited() {
			t.Fatalf("enqueue ended before the kill; stdout %q stderr:\n%s", p.Stdout(), p.Stderr())
		}
		if time.Now().After(deadline) {
			t.Fatalf("lanes %q, not far enough into the file after 15s; stderr:\n%s", lanes, p.Stderr())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Signal(t, syscall.SIGKILL)
	p.Wait(t, 10*time.Second)
	if p.Stdout() != "" {
		t.Fatalf("enqueue printed its summary %q: it finished before the kill", p.Stdout())
	}

	n := pending()
	llen, err := srv.Client(t).LLen(ctx, "asynq:{"+lane+"}:pending").Result()
	if err != nil {
		t.Fatal(err)
	}
	c, err := led.Counts(ctx, "kill")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %v: %d of %d rows in %s", time.Since(start).Round(time.Millisecond), n, rows, lane)
	if n == 0 || n >= rows {
		t.Fatalf("%d of %d rows enqueued: the kill did not land mid-file", n, rows)
	}
	if c.Enqueued != int64(n) || llen != int64(n) {
		t.Fatalf("ledger counts %d enqueued, the lane holds %d pending (LLEN %d): want them equal", c.Enqueued, n, llen)
	}
}
