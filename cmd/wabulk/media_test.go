package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/inprocess"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

const (
	mediaSID     = "media-cli-sid"
	mediaKey     = "media-cli-key-0123456789"
	mediaSender  = "+919800000001"
	mediaSender2 = "+919800000002"
)

var jpegFile = "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01 a picture of shoes"

// mediaSandbox is a fake Kaleyra of the test account with two senders, for the real binary.
func mediaSandbox(t *testing.T) *sandbox.Server {
	t.Helper()
	sb, err := sandbox.Start(sandbox.Config{SID: mediaSID, APIKey: mediaKey, Senders: []string{mediaSender, mediaSender2}, Balance: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// kaleyraEnv is the environment of a command talking to sb.
func kaleyraEnv(sb *sandbox.Server, extra ...string) []string {
	return append([]string{"KALEYRA_SID=" + mediaSID, "KALEYRA_API_KEY=" + mediaKey, "KALEYRA_BASE_URL=" + sb.URL,
		"KALEYRA_FROM=" + mediaSender}, extra...)
}

func TestMediaUploadCLI(t *testing.T) {
	sb := mediaSandbox(t)
	jpg := writeFile(t, "shoes.jpg", jpegFile)
	r := runCLI(t, kaleyraEnv(sb), "media", "upload", jpg)
	id := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(id, "sbx-") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	ups := sb.Uploads()
	if len(ups) != 1 || ups[0].ID != id || ups[0].From != "919800000001" || ups[0].Type != "image/jpeg" || ups[0].Size != int64(len(jpegFile)) {
		t.Errorf("sandbox saw %+v", ups)
	}
	if !strings.Contains(r.stderr, "uploaded shoes.jpg (image/jpeg") {
		t.Errorf("stderr %q", r.stderr)
	}
	// --from and --type.
	r = runCLI(t, kaleyraEnv(sb), "media", "upload", "--from", "91 98000 00002", "--type", "audio/mp4", jpg)
	if ups := sb.Uploads(); r.code != 0 || len(ups) != 2 || ups[1].From != "919800000002" || ups[1].Type != "audio/mp4" {
		t.Errorf("exit %d %s; uploads %+v", r.code, r.stderr, ups)
	}

	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		stderr string
	}{
		{"a gif is refused naming what WhatsApp takes", kaleyraEnv(sb), []string{writeFile(t, "a.gif", "GIF89a\x01\x00\x01\x00....")},
			"a.gif is image/gif, a type WhatsApp does not take; it takes image jpeg/png (5 MB)"},
		{"a picture over 5 MB is refused naming the limit", kaleyraEnv(sb), []string{writeFile(t, "big.jpg", jpegFile+strings.Repeat("x", 5_000_000))},
			"over the 5,000,000 bytes (5 MB) WhatsApp takes for an image (image/jpeg)"},
		{"a type WhatsApp does not take", kaleyraEnv(sb), []string{"--type", "image/gif", jpg}, "is image/gif, a type WhatsApp does not take"},
		{"no sender", []string{"KALEYRA_SID=" + mediaSID, "KALEYRA_API_KEY=" + mediaKey, "KALEYRA_BASE_URL=" + sb.URL}, []string{jpg},
			"give the business number with --from or KALEYRA_FROM"},
		{"no credentials", []string{"KALEYRA_FROM=" + mediaSender}, []string{jpg}, "KALEYRA_SID is required"},
		{"a wrong key is Kaleyra's RBC001", kaleyraEnv(sb, "KALEYRA_API_KEY=wrong-key-0000"), []string{jpg}, "RBC001: Incorrect SID or API key."},
		{"a sender not on the account is WA401", kaleyraEnv(sb), []string{"--from", "+919800000009", jpg}, "WA401"},
		{"a missing file", kaleyraEnv(sb), []string{"/nonexistent/a.jpg"}, "media file: stat /nonexistent/a.jpg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(sb.Uploads())
			r := runCLI(t, tc.env, append([]string{"media", "upload"}, tc.args...)...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 saying %q", r.code, r.stdout, r.stderr, tc.stderr)
			}
			if strings.Contains(r.stderr, mediaKey) {
				t.Errorf("the key shows in %q", r.stderr)
			}
			// Refusals before uploading reach no sandbox.
			if strings.Contains(tc.stderr, "WhatsApp") && len(sb.Uploads()) != before {
				t.Errorf("a refused file was uploaded")
			}
		})
	}
}

// jobsOf decodes the pending jobs of a campaign's lane of sender.
func jobsOf(t *testing.T, rs *redistest.Server, campaign, sender string) []job.Payload {
	t.Helper()
	insp := asynq.NewInspector(rs.ConnOpt(t))
	defer insp.Close()
	tasks, err := insp.ListPendingTasks(store.New(nil, "whatsapp", 0).LaneName(campaign, sender))
	if err != nil {
		return nil
	}
	var out []job.Payload
	for _, task := range tasks {
		p, err := job.Decode(task.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestEnqueueMediaFileUploadsOncePerSenderAndCaches(t *testing.T) {
	sb := mediaSandbox(t)
	rs := redistest.Start(t)
	env := kaleyraEnv(sb, "WABULK_REDIS_URL="+rs.URL)
	jpg := writeFile(t, "shoes.jpg", jpegFile)
	csv := writeFile(t, "spring.csv", "to,ref\n+919876543210,a\n+919876543211,b\n")

	r := runCLI(t, env, "enqueue", "--media-file", jpg, "--caption", "New shoes", csv)
	if r.code != 0 || r.lastLine() != "enqueued 2, duplicates 0, rejected 0" || !strings.Contains(r.stderr, "uploaded from +919800000001") {
		t.Fatalf("first run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	ups := sb.Uploads()
	if len(ups) != 1 {
		t.Fatalf("%d uploads, want 1", len(ups))
	}
	id := ups[0].ID
	jobs := jobsOf(t, rs, "spring", mediaSender)
	if len(jobs) != 2 {
		t.Fatalf("%d jobs", len(jobs))
	}
	for _, p := range jobs {
		if p.MediaID != id || p.MediaLink != "" || p.Type != "image" || p.Caption != "New shoes" {
			t.Errorf("job %+v, want image %s without a link", p, id)
		}
	}

	// Run again, and a second campaign with the same file: no upload, the cached id.
	r = runCLI(t, env, "enqueue", "--media-file", jpg, csv)
	if r.code != 0 || r.lastLine() != "enqueued 0, duplicates 2, rejected 0" || !strings.Contains(r.stderr, "cached id reused for +919800000001") {
		t.Errorf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLIWithInput(t, env, []byte("to,from\n+919876543212,\n+919876543213,+919800000002\n"),
		"enqueue", "--json", "--media-file", jpg, "--campaign", "autumn", "-")
	var out struct {
		Enqueued int
		Media    struct {
			Senders []struct {
				Sender   string `json:"sender"`
				MediaID  string `json:"media_id"`
				Uploaded bool   `json:"uploaded"`
			} `json:"senders"`
		} `json:"media"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Enqueued != 2 {
		t.Fatalf("stdin campaign: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The first sender reuses its id; the second has its own upload.
	s := out.Media.Senders
	if len(s) != 2 || s[0].Uploaded || s[0].MediaID != id || !s[1].Uploaded || s[1].Sender != mediaSender2 || s[1].MediaID == id {
		t.Errorf("media report %+v", s)
	}
	if n := len(sb.Uploads()); n != 2 {
		t.Errorf("%d uploads in all, want 2 (one per sender)", n)
	}
	if p := jobsOf(t, rs, "autumn", mediaSender2); len(p) != 1 || p[0].MediaID != s[1].MediaID {
		t.Errorf("second sender's job %+v", p)
	}
}

func TestEnqueueMediaFileFailuresEnqueueNothing(t *testing.T) {
	sb := mediaSandbox(t)
	rs := redistest.Start(t)
	jpg := writeFile(t, "shoes.jpg", jpegFile)
	csv := writeFile(t, "spring.csv", "to,from\n+919876543210,\n+919876543211,+919800000002\n")
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		stderr string
	}{
		{"a failed upload for the second sender", kaleyraEnv(sb, "WABULK_REDIS_URL="+rs.URL), []string{"--media-file", jpg, csv},
			"nothing enqueued: upload shoes.jpg from +919800000002: WA401"},
		{"a wrong key", kaleyraEnv(sb, "WABULK_REDIS_URL="+rs.URL, "KALEYRA_API_KEY=wrong-key-0000"), []string{"--media-file", jpg, csv},
			"nothing enqueued: upload shoes.jpg from +919800000001: RBC001"},
		{"a file WhatsApp refuses, checked before Redis", kaleyraEnv(sb, "WABULK_REDIS_URL=redis://127.0.0.1:1/0"),
			[]string{"--media-file", writeFile(t, "a.gif", "GIF89a\x01\x00\x01\x00...."), csv}, "a.gif is image/gif, a type WhatsApp does not take"},
		{"a file and a link", kaleyraEnv(sb, "WABULK_REDIS_URL="+rs.URL), []string{"--media-file", jpg, "--media-link", "https://x.test/a.jpg", csv},
			"give --media-file, --media-id or --media-link, not two"},
		{"a default type the file is not", kaleyraEnv(sb, "WABULK_REDIS_URL="+rs.URL), []string{"--media-file", jpg, "--type", "video", csv},
			`type "video", but the media file shoes.jpg is image/jpeg, sent as image`},
		{"no credentials", []string{"WABULK_REDIS_URL=" + rs.URL, "KALEYRA_FROM=" + mediaSender}, []string{"--media-file", jpg, csv},
			"KALEYRA_SID is required"},
		{"redis down", kaleyraEnv(sb, "WABULK_REDIS_URL=redis://127.0.0.1:1/0"), []string{"--media-file", jpg, csv},
			"redis at redis://127.0.0.1:1/0: redis unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "second sender") {
				// The second sender is not on this sandbox's account.
				sb2, err := sandbox.Start(sandbox.Config{SID: mediaSID, APIKey: mediaKey, Senders: []string{mediaSender}, Balance: -1})
				if err != nil {
					t.Fatal(err)
				}
				defer sb2.Close()
				tc.env = kaleyraEnv(sb2, "WABULK_REDIS_URL="+rs.URL)
			}
			r := runCLI(t, tc.env, append([]string{"enqueue"}, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want 2 saying %q", r.code, r.stderr, tc.stderr)
			}
			if keys := rs.Client(t).Keys(context.Background(), "asynq:*").Val(); len(keys) != 0 {
				t.Errorf("something was enqueued: %v", keys)
			}
		})
	}
}

// A campaign sent end to end with --media-file: every call the sandbox received sends the
// uploaded id as image.id, none a link, and re-running the send uploads nothing.
func TestSendMediaFileEndToEnd(t *testing.T) {
	sb := mediaSandbox(t)
	rs := redistest.Start(t)
	env := kaleyraEnv(sb, "WABULK_REDIS_URL="+rs.URL, "WABULK_METRICS_ADDR=")
	jpg := writeFile(t, "shoes.jpg", jpegFile)
	csv := "to,from,ref\n"
	for i := range 20 {
		from := ""
		if i%4 == 0 {
			from = mediaSender2
		}
		csv += "+9198765432" + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "," + from + ",r\n"
	}
	path := writeFile(t, "launch.csv", csv)
	run := func() inprocess.SendResult {
		r := runCLI(t, env, "send", "--json", "--media-file", jpg, path)
		var res inprocess.SendResult
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
			t.Fatalf("send: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		return res
	}
	res := run()
	if res.Sent != 20 || res.Media == nil || len(res.Media.Senders) != 2 || res.Media.Uploads() != 2 {
		t.Fatalf("result %+v media %+v", res, res.Media)
	}
	ids := map[string]string{}
	for _, s := range res.Media.Senders {
		ids[strings.TrimPrefix(s.Sender, "+")] = s.MediaID
	}
	calls := sb.Calls()
	if len(calls) != 20 {
		t.Fatalf("%d calls, want 20", len(calls))
	}
	for _, c := range calls {
		if c.Answer != sandbox.AnswerOK || c.Type != "image" || c.Link || c.MediaID == "" || c.MediaID != ids[c.From] {
			t.Errorf("call %+v, want image.id %s and no link", c, ids[c.From])
		}
	}
	// Another campaign with the same file, in another process: both ids come from the cache.
	r := runCLI(t, env, "send", "--json", "--media-file", jpg, "--campaign", "launch-again", writeFile(t, "again.csv", csv))
	var again inprocess.SendResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &again) != nil || again.Sent != 20 || again.Media.Uploads() != 0 {
		t.Fatalf("second send: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := sb.Stats().Uploaded; n != 2 {
		t.Errorf("%d uploads over two sends, want 2", n)
	}
}

func TestSendMediaFileOnTheInProcessSandbox(t *testing.T) {
	r := runCLI(t, nil, "send", "--embedded-redis", "--sandbox", "--json", "--media-file", writeFile(t, "a.jpg", jpegFile),
		writeFile(t, "s.csv", "to\n+919876543210\n+919876543211\n"))
	var res inprocess.SendResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if res.Sent != 2 || res.Sandbox == nil || res.Sandbox.Uploaded != 1 || res.Sandbox.Answered[sandbox.AnswerOK] != 2 {
		t.Errorf("result %+v, sandbox %+v", res, res.Sandbox)
	}
	// A refused file stops send before anything starts.
	r = runCLI(t, nil, "send", "--embedded-redis", "--sandbox", "--media-file", writeFile(t, "a.gif", "GIF89a\x01\x00\x01\x00...."),
		writeFile(t, "s.csv", "to\n+919876543210\n"))
	if r.code != 2 || !strings.Contains(r.stderr, "a type WhatsApp does not take") || strings.Contains(r.stderr, "embedded Redis on") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}
